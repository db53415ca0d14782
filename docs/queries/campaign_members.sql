-- The keys of each suspected campaign (its latest membership), with the campaign's peak risk and each key's own current action.
SELECT
    c.campaign_id AS campaign_id,
    round(c.peak_risk, 6) AS campaign_peak_risk,
    member,
    l.action AS member_action,
    round(l.risk, 6) AS member_risk,
    l.events_seen AS member_events,
    c.summary AS summary
FROM (
    SELECT
        campaign_id,
        argMax(members, (ts, events_seen)) AS members,
        argMax(summary, (ts, events_seen)) AS summary,
        max(risk) AS peak_risk
    FROM clonewatch.campaigns
    GROUP BY campaign_id
) AS c
ARRAY JOIN c.members AS member
LEFT JOIN clonewatch.client_risk_latest AS l ON l.client_id = member
ORDER BY campaign_peak_risk DESC, campaign_id, member
