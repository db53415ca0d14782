-- Benign drift: per day, the median, 90th and 99th percentiles of key features over clients never acted on.
SELECT
    toDate(ts) AS day,
    uniqExact(client_id) AS clients,
    count() AS scores,
    arrayMap(x -> round(x, 3), quantiles(0.5, 0.9, 0.99)(features['rate_per_min'])) AS rate_per_min,
    arrayMap(x -> round(x, 3), quantiles(0.5, 0.9, 0.99)(features['coverage_ratio'])) AS coverage_ratio,
    arrayMap(x -> round(x, 3), quantiles(0.5, 0.9, 0.99)(features['near_dup_rate'])) AS near_dup_rate,
    arrayMap(x -> round(x, 4), quantiles(0.5, 0.9, 0.99)(risk)) AS risk
FROM clonewatch.risk_scores FINAL
WHERE client_id NOT IN (SELECT client_id FROM clonewatch.decisions WHERE action != 'allow')
GROUP BY day
ORDER BY day
