-- A model input's length, which an image classifier's rows exceed 65,535 (224 x 224 x 3 =
-- 150,528): such rows are stored as their sketch in `features` (ingest/oversize.py), and
-- `features_count` keeps the row's own length.

ALTER TABLE {db}.access_events MODIFY COLUMN features_count UInt32;
