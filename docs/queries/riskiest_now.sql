-- The riskiest clients now: the current action (most severe first), risk, peak, campaign and the top reason.
SELECT
    client_id,
    action,
    round(risk, 6) AS risk,
    round(peak_risk, 6) AS peak_risk,
    events_seen,
    updated_at,
    campaign_id,
    reasons[1] AS top_reason
FROM clonewatch.client_risk_latest
ORDER BY indexOf(['allow', 'throttle', 'challenge', 'deny'], action) DESC, risk DESC, client_id
LIMIT 20
