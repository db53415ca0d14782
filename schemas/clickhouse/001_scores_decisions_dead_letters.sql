-- Risk after every client event, decisions (changes of action), rejected lines.
-- ReplacingMergeTrees keyed by what makes a row the same row: a rerun after a crash, or a
-- worker replaying from its last commit, writes rows that merge into the first ones
-- (SELECT ... FINAL reads them once before a merge).

CREATE TABLE IF NOT EXISTS {db}.risk_scores (
    ts DateTime64(3, 'UTC'),
    client_id String,
    events_seen UInt64,
    window_events UInt32,
    risk Float64,
    action LowCardinality(String),
    reasons Array(String),
    features Map(String, Float64),
    model_version LowCardinality(String),
    campaign_id Nullable(String)
) ENGINE = ReplacingMergeTree ORDER BY (client_id, ts, events_seen, model_version);

CREATE TABLE IF NOT EXISTS {db}.decisions (
    ts DateTime64(3, 'UTC'),
    client_id String,
    risk Float64,
    action LowCardinality(String),
    events_seen UInt64,
    reasons Array(String)
) ENGINE = ReplacingMergeTree ORDER BY (client_id, ts, events_seen, action);

CREATE TABLE IF NOT EXISTS {db}.dead_letters (
    received_at DateTime64(3, 'UTC'),
    source String,
    line UInt64,
    reason String,
    raw String
) ENGINE = ReplacingMergeTree ORDER BY (source, line, reason, cityHash64(raw));
