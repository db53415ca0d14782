-- How many tokens each request biased (OpenAI's logit_bias map, counted; 0 for none), for
-- analysts, and read back with the rest of a request when history is replayed (--from-store).

ALTER TABLE {db}.access_events ADD COLUMN IF NOT EXISTS logit_bias UInt16 DEFAULT 0 AFTER n;
