-- Decisions that put a client under throttle, challenge or deny in the last hour of traffic (the latest event's time, so replays work too).
SELECT ts, client_id, action, round(risk, 6) AS risk, events_seen, reasons[1] AS top_reason
FROM clonewatch.decisions FINAL
WHERE action != 'allow'
  AND ts > (SELECT max(ts) FROM clonewatch.access_events) - INTERVAL 1 HOUR
ORDER BY ts DESC, client_id
