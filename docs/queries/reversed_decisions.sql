-- Actions later reversed (the client went back to allow): the false-positive review list, longest-held first.
SELECT
    f.client_id AS client_id,
    f.action AS action,
    f.ts AS acted_at,
    min(r.ts) AS released_at,
    dateDiff('second', f.ts, min(r.ts)) AS held_s,
    any(f.reasons) AS reasons
FROM clonewatch.decisions AS f FINAL
INNER JOIN clonewatch.decisions AS r FINAL ON r.client_id = f.client_id
WHERE f.action != 'allow' AND r.action = 'allow' AND r.ts > f.ts
GROUP BY f.client_id, f.action, f.ts
ORDER BY held_s DESC, client_id, acted_at
