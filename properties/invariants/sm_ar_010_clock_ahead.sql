-- id: SM-AR-010
-- description: arrears: a notice released on a reading whose device time is ahead of its receipt by more than the tolerance says so (clock_ahead) and never states an input time later than that receipt
-- batch: true
-- domain: arrears
-- Receipt is the store's receive time bounded by the delivery: least(recorded_at, delivered_at).
WITH released AS (
    SELECT run_id, seq, cause_seq, "at", subject, reasons, input_time, inputs
    FROM decisions WHERE kind = 'arrears-notice' AND status IN ('released', 'sent')
), cited AS (
    SELECT run_id, seq, cause_seq, unnest(inputs) AS event_id FROM released
), ahead AS (
    SELECT c.run_id, c.seq, max(l.occurred_at - least(l.recorded_at, l.delivered_at)) AS ahead_ns,
           min(least(l.recorded_at, l.delivered_at)) AS received_at
    FROM cited c
    JOIN deliveries l ON l.run_id = c.run_id AND l.event_id = c.event_id AND l.seq <= c.cause_seq
    JOIN runs u ON u.run_id = c.run_id
    WHERE l.type = 'MeterReading'
      AND l.occurred_at - least(l.recorded_at, l.delivered_at)
          > json_extract(u.config, '$.clock_ahead_tolerance_s')::DOUBLE * 1e9
    GROUP BY ALL
)
SELECT r.run_id, r.seq, r.at, r.subject, r.input_time, a.received_at, a.ahead_ns,
       CASE WHEN NOT list_contains(r.reasons, 'clock_ahead')
                THEN 'released on a reading from a clock ahead without saying so'
            ELSE 'states an input time later than the reading was received' END AS problem
FROM released r JOIN ahead a ON a.run_id = r.run_id AND a.seq = r.seq
WHERE NOT list_contains(r.reasons, 'clock_ahead') OR r.input_time > a.received_at
