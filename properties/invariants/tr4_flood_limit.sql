-- id: TR-004
-- description: trading: new order intents stay within max_intents_per_minute in any 60 s window, and no signal waits longer than max_signal_age_s (bounded queue lag)
-- batch: true
-- domain: trading
WITH cfg AS (
    SELECT run_id, json_extract(config, '$.max_intents_per_minute')::BIGINT AS per_minute,
           (json_extract(config, '$.max_signal_age_s')::DOUBLE * 1e9)::BIGINT AS max_lag_ns
    FROM runs
), intents AS (
    SELECT run_id, seq, "at" AS t, subject, input_time
    FROM decisions
    WHERE kind = 'order' AND status IN ('released', 'sent') AND effect_key LIKE '%#0'
), windows AS (
    SELECT a.run_id, a.seq, a.subject, count(*) AS in_minute
    FROM intents a JOIN intents b ON b.run_id = a.run_id AND b.seq <= a.seq
    WHERE b.t > a.t - 60000000000
    GROUP BY ALL
)
SELECT w.run_id, w.seq, w.subject, w.in_minute AS value, 'more intents in a minute than the policy allows' AS problem
FROM windows w JOIN cfg c USING (run_id) WHERE w.in_minute > c.per_minute
UNION ALL
SELECT i.run_id, i.seq, i.subject, i.t - i.input_time, 'signal sent after waiting longer than its largest age'
FROM intents i JOIN cfg c USING (run_id) WHERE i.t - i.input_time > c.max_lag_ns
