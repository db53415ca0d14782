-- Candidate campaigns: keys that one operator seems to run together, after each member event
-- that changed them (members, what ties them, the campaign's risk and evidence).

CREATE TABLE IF NOT EXISTS {db}.campaigns (
    ts DateTime64(3, 'UTC'),
    campaign_id String,
    members Array(String),
    ties Array(String),
    summary String,
    events_seen UInt64,
    risk Float64,
    evidence Float64,
    model_version LowCardinality(String)
) ENGINE = ReplacingMergeTree ORDER BY (campaign_id, ts, events_seen);
