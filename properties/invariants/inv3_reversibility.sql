-- id: INV-3
-- description: reversibility: an irreversible action is released only after a hold for the same effect whose window has ended, and never straight after a cancel
-- batch: true
-- The gate of a release is the latest held or cancelled decision before it for the same
-- effect (effect_key, else subject and action). It must be a hold whose window is over
-- (SM-AR-005: after a cancel, a new hold is needed).
WITH effective AS (
    SELECT *, coalesce(effect_key, subject || '/' || action) AS effect
    FROM decisions WHERE irreversible AND status IN ('released', 'sent')
), gates AS (
    SELECT run_id, seq AS gate_seq, status AS gate_status, hold_until AS gate_hold_until,
           coalesce(effect_key, subject || '/' || action) AS effect
    FROM decisions WHERE status IN ('held', 'cancelled')
)
SELECT e.run_id, e.seq, e.at, e.kind, e.subject, e.action, e.status, e.effect_key,
       g.gate_seq, g.gate_status, g.gate_hold_until,
       CASE WHEN g.gate_seq IS NULL THEN 'released without a hold'
            WHEN g.gate_status = 'cancelled' THEN 'released after a cancel without a new hold'
            WHEN g.gate_hold_until IS NULL THEN 'held without a window'
            ELSE 'released before its hold window ended' END AS problem
FROM effective e
ASOF LEFT JOIN gates g ON g.run_id = e.run_id AND g.effect = e.effect AND e.seq > g.gate_seq
WHERE g.gate_seq IS NULL OR g.gate_status = 'cancelled' OR g.gate_hold_until IS NULL
   OR e.at < g.gate_hold_until
