-- id: AR-3
-- description: arrears: no notice is released for a customer whose vulnerable flag, as last stated before the release, is active (SM-AR-008)
-- batch: true
-- domain: arrears
WITH released AS (
    SELECT d.run_id, d.seq, d.cause_seq, d.at, d.subject AS account
    FROM decisions d WHERE kind = 'arrears-notice' AND status IN ('released', 'sent')
), flags AS (
    SELECT l.run_id, l.seq, l.occurred_at, e.account_id AS account,
           e.active AS active
    FROM deliveries l JOIN events e ON e.run_id = l.run_id AND e.position = l.position
    WHERE l.type = 'CustomerFlag' AND e.flag = 'vulnerable'
), latest AS (
    SELECT r.run_id, r.seq, r.at, r.account, arg_max(coalesce(f.active, true), f.occurred_at) AS active
    FROM released r JOIN flags f
      ON f.run_id = r.run_id AND f.account = r.account AND f.seq < r.cause_seq
    GROUP BY ALL
)
SELECT run_id, seq, "at", account AS subject, 'notice released to a vulnerable customer' AS problem
FROM latest WHERE active
