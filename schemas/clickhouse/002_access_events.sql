-- Every accepted request, without its prompt unless the operator opts in (--keep-prompts):
-- what a flagged client was served, and the history retraining and drift reports read.
-- Partitioned by day, kept 30 days (ALTER TABLE ... MODIFY TTL to change that).

CREATE TABLE IF NOT EXISTS {db}.access_events (
    ts DateTime64(3, 'UTC'),
    client_id String,
    request_id String,
    ip String,
    user_agent String,
    path LowCardinality(String),
    model LowCardinality(String),
    status UInt16,
    latency_ms Float32,
    tokens_in UInt32,
    tokens_out UInt32,
    prompt_hash String,
    prompt_chars UInt32,
    features_count UInt16,
    temperature Nullable(Float32),
    max_tokens Nullable(UInt32),
    logprobs Bool,
    n UInt16,
    prompt Nullable(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (client_id, ts, request_id, prompt_hash)
TTL toDateTime(ts) + INTERVAL 30 DAY;
