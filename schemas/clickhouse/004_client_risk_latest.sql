-- Each client's current state: its latest score (by time, then events seen), its current action
-- (the latest decision: a campaign's action reaches members between their own scores) and why.
-- A view, so it is always exact, also before merges and after reruns.

CREATE VIEW IF NOT EXISTS {db}.client_risk_latest AS
SELECT
    s.client_id AS client_id,
    s.updated_at AS updated_at,
    s.seen AS events_seen,
    s.latest.1 AS risk,
    if(d.client_id = '', 'allow', d.latest_action.1) AS action,
    if(d.client_id = '', NULL, d.latest_action.2) AS action_since,
    if(d.client_id = '', [], d.latest_action.3) AS action_reasons,
    s.latest.2 AS reasons,
    s.latest.3 AS campaign_id,
    s.latest.4 AS model_version,
    s.peak_risk AS peak_risk
FROM (
    SELECT
        client_id,
        max(ts) AS updated_at,
        max(events_seen) AS seen,
        argMax((risk, reasons, campaign_id, model_version), (ts, events_seen)) AS latest,
        max(risk) AS peak_risk
    FROM {db}.risk_scores
    GROUP BY client_id
) AS s
LEFT JOIN (
    SELECT
        client_id,
        argMax((action, ts, reasons), (ts, events_seen, indexOf(['allow', 'throttle', 'challenge', 'deny'], action))) AS latest_action
    FROM {db}.decisions
    GROUP BY client_id
) AS d ON d.client_id = s.client_id;
