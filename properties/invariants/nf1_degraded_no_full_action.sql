-- id: NF-1
-- description: grid: partial visibility is an explicit degraded mode, and no full protection action (a released load shed) is taken unless the mode in force is normal (NF-001)
-- batch: true
-- domain: grid
-- The mode at a decision is the latest grid-mode decision before it, by seq. Node states at
-- the end of a step are each node's latest grid-node decision up to that step.
WITH mode AS (
    SELECT run_id, seq AS mode_seq, action AS mode FROM decisions WHERE kind = 'grid-mode'
), shed AS (
    SELECT run_id, seq, "at" AS d_at, effect_key FROM decisions
    WHERE kind = 'protection' AND status IN ('released', 'sent')
), nd AS (
    SELECT run_id, seq, cause_seq, subject, action FROM decisions WHERE kind = 'grid-node'
), steps AS (
    SELECT DISTINCT run_id, cause_seq FROM nd WHERE action = 'silent'
), last_state AS (
    SELECT s.run_id, s.cause_seq, n.subject, arg_max(n.action, n.seq) AS state
    FROM steps s JOIN nd n ON n.run_id = s.run_id AND n.cause_seq <= s.cause_seq
    GROUP BY ALL
), vis AS (
    SELECT run_id, cause_seq, count(*) FILTER (WHERE state = 'visible') AS visible
    FROM last_state GROUP BY ALL
), mode_at AS (
    SELECT v.run_id, v.cause_seq, v.visible, arg_max(m.action, m.seq) AS mode
    FROM vis v JOIN decisions m ON m.run_id = v.run_id AND m.kind = 'grid-mode' AND m.cause_seq <= v.cause_seq
    GROUP BY ALL
)
SELECT s.run_id, s.seq, s.d_at AS "at", s.effect_key, m.mode,
       'load shed released while the grid mode is not normal' AS problem
FROM shed s ASOF LEFT JOIN mode m ON m.run_id = s.run_id AND s.seq > m.mode_seq
WHERE m.mode IS DISTINCT FROM 'normal'
UNION ALL
SELECT run_id, cause_seq, NULL, NULL, mode,
       'a node went silent while others are visible and the mode is not degraded'
FROM mode_at WHERE visible > 0 AND mode <> 'degraded'
