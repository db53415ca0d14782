-- Numeric model inputs (KServe/TF-Serving instances, tabular rows) of each request, so that a
-- model can be retrained from stored history (clonewatch train --from-store).

ALTER TABLE {db}.access_events ADD COLUMN IF NOT EXISTS features Array(Float32) AFTER features_count;
