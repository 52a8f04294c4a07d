-- id: NF-3
-- description: grid: a node enters and leaves the silent state with hysteresis, not per packet: silent only after its stale bound without a report (by its own time), visible again only after recovering for recover_s (NF-003)
-- batch: true
-- domain: grid
WITH cfg AS (
    SELECT run_id, CAST(CAST(json_extract(config, '$.recover_s') AS DOUBLE) * 1e9 AS BIGINT) AS recover_ns
    FROM runs
), n AS (
    SELECT run_id, seq, "at" AS d_at, subject, action, input_time, freshness_ns,
           lag(action) OVER w AS prev_action, lag("at") OVER w AS prev_at
    FROM decisions WHERE kind = 'grid-node'
    WINDOW w AS (PARTITION BY run_id, subject ORDER BY seq)
)
SELECT run_id, seq, d_at AS "at", subject, action, prev_action,
       'node marked silent before its stale bound passed' AS problem
FROM n
WHERE action = 'silent' AND (input_time IS NULL OR freshness_ns IS NULL OR d_at - input_time < freshness_ns)
UNION ALL
SELECT n.run_id, n.seq, n.d_at, n.subject, n.action, n.prev_action,
       'node visible again without a full recovery window'
FROM n JOIN cfg c ON c.run_id = n.run_id
WHERE n.action = 'visible' AND n.prev_action IS NOT NULL
  AND (n.prev_action <> 'recovering' OR n.d_at - n.prev_at < c.recover_ns)
