-- What ingest rejected, and why: lines per reason and source, with one example line number.
SELECT source, splitByString(' - at ', reason)[1] AS reason, count() AS lines, min(line) AS first_line
FROM clonewatch.dead_letters FINAL
GROUP BY source, reason
ORDER BY lines DESC, source, reason
