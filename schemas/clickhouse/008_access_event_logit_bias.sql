-- How many tokens each request biased (OpenAI's logit_bias map, counted; 0 for none), so that a
-- model retrained from stored history (clonewatch train --from-store) sees it as scoring does.

ALTER TABLE {db}.access_events ADD COLUMN IF NOT EXISTS logit_bias UInt16 DEFAULT 0 AFTER n;
