-- id: TR-001
-- description: trading: no order is released while the kill switch is tripped (from a trip until a reset), and every trip records an alert
-- batch: true
-- domain: trading
-- The switch's state at a decision is the latest trip or reset released before it, by seq.
-- The alert is released at the trip, or held there when the price is stale (then released
-- on the next fresh price).
WITH switch AS (
    SELECT run_id, seq AS switch_seq, action AS switch_action
    FROM decisions
    WHERE kind = 'kill-switch' AND status = 'released' AND action IN ('trip', 'reset')
), released AS (
    SELECT * FROM decisions WHERE kind = 'order' AND status IN ('released', 'sent')
)
SELECT r.run_id, r.seq, r.d_at AS "at", r.subject, r.effect_key, s.switch_seq,
       'order released while the kill switch is tripped' AS problem
FROM (SELECT *, "at" AS d_at FROM released) r
ASOF JOIN switch s ON s.run_id = r.run_id AND r.seq > s.switch_seq
WHERE s.switch_action = 'trip'
UNION ALL
SELECT t.run_id, t.seq, t."at", t.subject, NULL, t.seq, 'trip without an alert decision'
FROM decisions t
WHERE t.kind = 'kill-switch' AND t.action = 'trip' AND t.status = 'released'
  AND NOT EXISTS (
      SELECT 1 FROM decisions a
      WHERE a.run_id = t.run_id AND a.kind = 'alert' AND a.status IN ('released', 'sent', 'held')
        AND a.cause_seq = t.cause_seq)
