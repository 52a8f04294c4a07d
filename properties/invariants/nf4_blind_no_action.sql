-- id: NF-4
-- description: grid: when every node is silent the grid is in an explicit blind mode, and nothing external or irreversible is released while blind (NF-004)
-- batch: true
-- domain: grid
WITH nd AS (
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
), acts AS (
    SELECT run_id, seq, "at" AS d_at, kind, action FROM decisions
    WHERE (external OR irreversible) AND status IN ('released', 'sent')
), mode AS (
    SELECT run_id, seq AS mode_seq, action AS mode FROM decisions WHERE kind = 'grid-mode'
)
SELECT run_id, cause_seq AS seq, NULL AS "at", NULL AS kind, mode,
       'every node is silent and the mode is not blind' AS problem
FROM mode_at WHERE visible = 0 AND mode <> 'blind'
UNION ALL
SELECT a.run_id, a.seq, a.d_at, a.kind, m.mode, 'automatic action while blind'
FROM acts a ASOF JOIN mode m ON m.run_id = a.run_id AND a.seq > m.mode_seq
WHERE m.mode = 'blind'
