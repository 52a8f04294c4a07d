-- id: AR-4
-- description: arrears: a notice is marked delivered only on a delivery record, never on an acknowledgement that it was accepted (SM-AR-014)
-- batch: true
-- domain: arrears
SELECT d.run_id, d.seq, d.at, d.subject, l.type AS cause_type,
       e.stage AS stage,
       'marked delivered without a delivery record' AS problem
FROM decisions d
LEFT JOIN deliveries l ON l.run_id = d.run_id AND l.seq = d.cause_seq
LEFT JOIN events e ON e.run_id = l.run_id AND e.position = l.position
WHERE d.kind = 'notice-delivery' AND d.status IN ('released', 'sent')
  AND (l.type IS DISTINCT FROM 'NotificationAck'
       OR e.stage IS DISTINCT FROM 'delivered')
