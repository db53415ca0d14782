-- How one client's coverage of the input space grew with its queries, beside the 90th percentile of never-flagged clients of the same age (--param client=ID).
WITH benign AS (
    SELECT intDiv(events_seen, 25) AS age, quantile(0.9)(features['coverage_ratio']) AS benign_p90
    FROM clonewatch.risk_scores FINAL
    WHERE client_id NOT IN (SELECT client_id FROM clonewatch.decisions WHERE action != 'allow')
      AND mapContains(features, 'coverage_ratio')
    GROUP BY age
)
SELECT
    s.events_seen AS events_seen,
    s.ts AS ts,
    round(s.features['coverage_ratio'], 3) AS coverage_ratio,
    round(benign.benign_p90, 3) AS benign_p90,
    round(s.features['region_entropy'], 3) AS region_entropy,
    round(s.risk, 6) AS risk,
    s.action AS action
FROM clonewatch.risk_scores AS s FINAL
LEFT JOIN benign ON benign.age = intDiv(s.events_seen, 25)
WHERE s.client_id = {client:String}
ORDER BY s.events_seen
