-- What each acted-on client was served before its first action: requests, tokens and the share of its traffic (the cost of the attack).
SELECT
    e.client_id AS client_id,
    f.first_action_at AS first_action_at,
    countIf(e.ts < f.first_action_at) AS requests_before,
    count() AS requests_total,
    round(requests_before / requests_total, 3) AS share_before,
    sumIf(e.tokens_in, e.ts < f.first_action_at) AS tokens_in_before,
    sumIf(e.tokens_out, e.ts < f.first_action_at) AS tokens_out_before
FROM clonewatch.access_events AS e FINAL
INNER JOIN (
    SELECT client_id, min(ts) AS first_action_at
    FROM clonewatch.decisions
    WHERE action != 'allow'
    GROUP BY client_id
) AS f ON f.client_id = e.client_id
GROUP BY e.client_id, f.first_action_at
ORDER BY requests_before DESC, client_id
