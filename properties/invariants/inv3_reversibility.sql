-- id: INV-3
-- description: reversibility: an irreversible action is released only after a hold for the same effect whose window has ended, the window judged from the decision that opened it, and never straight after a cancel
-- batch: true
-- The gate of a release is the latest held or cancelled decision before it for the same
-- effect (effect_key, else subject and action). It must be a hold whose window is over
-- (SM-AR-005: after a cancel, a new hold is needed). The window is not taken on the
-- projection's word alone: the holds since the effect's last cancel or release are found,
-- and the release must come no earlier than the first of them (the one the triggering
-- event opened) plus the configured hold (hold_hours or hold_s in the run's config, else
-- that hold's own stated length), nor before any of their stated windows ended.
WITH decided AS (
    SELECT *, coalesce(effect_key, subject || '/' || action) AS effect FROM decisions
), effective AS (
    SELECT * FROM decided WHERE irreversible AND status IN ('released', 'sent')
), gates AS (
    SELECT run_id, seq AS gate_seq, status AS gate_status, hold_until AS gate_hold_until, effect
    FROM decided WHERE status IN ('held', 'cancelled')
), boundaries AS (
    SELECT run_id, seq AS boundary_seq, effect
    FROM decided WHERE status IN ('cancelled', 'released', 'sent')
), chains AS (
    SELECT e.run_id, e.seq, coalesce(b.boundary_seq, -1) AS since_seq
    FROM effective e
    ASOF LEFT JOIN boundaries b ON b.run_id = e.run_id AND b.effect = e.effect AND e.seq > b.boundary_seq
), windows AS (
    SELECT c.run_id, c.seq, min(h.at) AS opened_at,
           arg_min(h.hold_until - h.at, h.seq) AS stated_window_ns, max(h.hold_until) AS last_until
    FROM chains c JOIN effective e ON e.run_id = c.run_id AND e.seq = c.seq
    JOIN decided h ON h.run_id = c.run_id AND h.effect = e.effect AND h.status = 'held'
     AND h.seq > c.since_seq AND h.seq < c.seq
    GROUP BY ALL
), judged AS (
    SELECT e.run_id, e.seq, e.at, e.kind, e.subject, e.action, e.status, e.effect_key, e.effect,
           w.opened_at, w.last_until,
           coalesce(round(json_extract(u.config, '$.hold_hours')::DOUBLE * 3600e9)::BIGINT,
                    round(json_extract(u.config, '$.hold_s')::DOUBLE * 1e9)::BIGINT,
                    w.stated_window_ns) AS window_ns
    FROM effective e JOIN runs u ON u.run_id = e.run_id
    LEFT JOIN windows w ON w.run_id = e.run_id AND w.seq = e.seq
)
SELECT e.run_id, e.seq, e.at, e.kind, e.subject, e.action, e.status, e.effect_key,
       g.gate_seq, g.gate_status, g.gate_hold_until, e.opened_at, e.window_ns,
       CASE WHEN g.gate_seq IS NULL THEN 'released without a hold'
            WHEN g.gate_status = 'cancelled' THEN 'released after a cancel without a new hold'
            WHEN g.gate_hold_until IS NULL THEN 'held without a window'
            WHEN e.at < g.gate_hold_until THEN 'released before its hold window ended'
            WHEN e.at < e.opened_at + e.window_ns
                THEN 'released before the window opened by its first hold ended'
            ELSE 'released before a window stated for it ended' END AS problem
FROM judged e
ASOF LEFT JOIN gates g ON g.run_id = e.run_id AND g.effect = e.effect AND e.seq > g.gate_seq
WHERE g.gate_seq IS NULL OR g.gate_status = 'cancelled' OR g.gate_hold_until IS NULL
   OR e.at < g.gate_hold_until OR e.at < e.opened_at + e.window_ns OR e.at < e.last_until
