-- id: INV-1
-- description: freshness: no customer-facing or irreversible decision rests on an input older than its freshness bound at decision time
-- batch: true
-- A decision with external effect must say how fresh its input is; one that does not is
-- reported too, because freshness that is not stated cannot be checked (SM-AR-001).
SELECT run_id, seq, d.at, kind, subject, action, status, input_time, freshness_ns,
       d.at - input_time AS age_ns,
       CASE WHEN input_time IS NULL OR freshness_ns IS NULL THEN 'freshness not stated'
            ELSE 'input older than its freshness bound' END AS problem
FROM decisions d
WHERE (external OR irreversible)
  AND status IN ('released', 'sent')
  AND (input_time IS NULL OR freshness_ns IS NULL OR d.at - input_time > freshness_ns)
