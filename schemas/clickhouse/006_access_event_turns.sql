-- How many earlier answers each chat request carried (its conversation's depth; NULL where the
-- log does not say), so that a model retrained from stored history (clonewatch train
-- --from-store) sees follow-ups as scoring does.

ALTER TABLE {db}.access_events ADD COLUMN IF NOT EXISTS turns Nullable(UInt16) AFTER n;
