-- id: SM-AR-006
-- description: arrears: every notice decision rests on each meter's latest reading by trusted time (least of device, receive and delivery time) among those delivered before it, so an older reading arriving late never becomes its basis
-- batch: true
-- domain: arrears
-- The per-decision counterpart of INV-5: whatever the delivery order, the basis of each
-- decision is the one an order-independent fold of the delivered readings gives (the
-- register stays monotonic because the latest reading is chosen by time, never by arrival).
WITH notices AS (
    SELECT run_id, seq, cause_seq, "at", subject, status, inputs
    FROM decisions
    WHERE kind = 'arrears-notice' AND status IN ('held', 'released', 'sent')
), readings AS (
    SELECT l.run_id, l.seq, l.event_id, e.account_id AS account,
           json_extract_string(e.data, '$.meter_id') AS meter,
           least(l.occurred_at, l.recorded_at, l.delivered_at) AS trusted
    FROM deliveries l JOIN events e ON e.run_id = l.run_id AND e.position = l.position
    WHERE l.type = 'MeterReading'
), latest AS (
    SELECT n.run_id, n.seq, r.meter, max({'t': r.trusted, 'id': r.event_id}) AS best
    FROM notices n JOIN readings r
      ON r.run_id = n.run_id AND r.account = n.subject AND r.seq <= n.cause_seq
    GROUP BY ALL
), cited AS (
    SELECT c.run_id, c.seq, r.meter, min(r.event_id) AS cited_id, min(r.trusted) AS cited_time
    FROM (SELECT run_id, seq, unnest(inputs) AS event_id FROM notices) c
    JOIN readings r ON r.run_id = c.run_id AND r.event_id = c.event_id
    GROUP BY ALL
)
SELECT n.run_id, n.seq, n.at, n.subject, n.status, l.meter, c.cited_id,
       c.cited_time, l.best.id AS latest_id, l.best.t AS latest_time,
       CASE WHEN c.cited_id IS NULL THEN 'rests on no reading of a meter that has one'
            ELSE 'rests on an older reading than the latest delivered' END AS problem
FROM notices n
JOIN latest l ON l.run_id = n.run_id AND l.seq = n.seq
LEFT JOIN cited c ON c.run_id = n.run_id AND c.seq = n.seq AND c.meter = l.meter
WHERE c.cited_id IS DISTINCT FROM l.best.id
