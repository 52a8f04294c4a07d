-- id: TR-003
-- description: trading: at most max_retries retries per order, each after its exponential backoff; requests stay under the exchange's limit; a trip follows a price or fill (a loss), never an exchange error
-- batch: true
-- domain: trading
WITH cfg AS (
    SELECT run_id,
           json_extract(config, '$.max_retries')::BIGINT AS max_retries,
           (json_extract(config, '$.backoff_s')::DOUBLE * 1e9)::BIGINT AS backoff_ns,
           json_extract(config, '$.request_limit')::BIGINT AS request_limit,
           (json_extract(config, '$.request_window_s')::DOUBLE * 1e9)::BIGINT AS window_ns
    FROM runs
), sent AS (
    SELECT d.run_id, d.seq, d."at" AS t, d.subject,
           split_part(d.effect_key, '#', 2)::BIGINT AS attempt
    FROM decisions d WHERE kind = 'order' AND status IN ('released', 'sent')
), retries AS (
    SELECT s.*, lag(t) OVER (PARTITION BY run_id, subject ORDER BY seq) AS prev_t,
           count(*) OVER (PARTITION BY run_id, subject) AS requests
    FROM sent s
), rate AS (
    SELECT a.run_id, a.seq, a.t, count(*) AS in_window
    FROM sent a JOIN sent b ON b.run_id = a.run_id AND b.seq <= a.seq
     JOIN cfg c ON c.run_id = a.run_id
    WHERE b.t > a.t - c.window_ns
    GROUP BY ALL
)
SELECT r.run_id, r.seq, r.subject, r.attempt, 'more retries than allowed' AS problem
FROM retries r JOIN cfg c USING (run_id) WHERE r.attempt > c.max_retries
UNION ALL
SELECT r.run_id, r.seq, r.subject, r.attempt, 'retry before its backoff'
FROM retries r JOIN cfg c USING (run_id)
WHERE r.attempt > 0 AND r.t - r.prev_t < c.backoff_ns * (2 ** (r.attempt - 1))::BIGINT
UNION ALL
SELECT w.run_id, w.seq, NULL, w.in_window, 'request rate over the exchange limit'
FROM rate w JOIN cfg c USING (run_id) WHERE w.in_window > c.request_limit
UNION ALL
SELECT t.run_id, t.seq, t.subject, NULL, 'trip not caused by a price or a fill'
FROM decisions t LEFT JOIN deliveries l ON l.run_id = t.run_id AND l.seq = t.cause_seq
WHERE t.kind = 'kill-switch' AND t.action = 'trip' AND t.status = 'released'
  AND (l.type IS NULL OR l.type NOT IN ('MarketTick', 'OrderFill'))
