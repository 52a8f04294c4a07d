-- id: AR-2
-- description: arrears: at most one notice released per account and billing period, the period being the local month of the due time of the statement in force (SM-AR-013)
-- batch: true
-- domain: arrears
WITH released AS (
    SELECT d.run_id, d.seq, d.cause_seq, d.subject AS account
    FROM decisions d WHERE kind = 'arrears-notice' AND status IN ('released', 'sent')
), statements AS (
    SELECT l.run_id, l.seq, l.occurred_at, e.account_id AS account,
           coalesce(e.due_at, l.occurred_at) AS due_at
    FROM deliveries l JOIN events e ON e.run_id = l.run_id AND e.position = l.position
    WHERE l.type = 'AccountBalance'
), periods AS (
    SELECT r.run_id, r.seq, r.account,
           arg_max(s.due_at, s.occurred_at) AS due_at
    FROM released r JOIN statements s
      ON s.run_id = r.run_id AND s.account = r.account AND s.seq < r.cause_seq
    GROUP BY ALL
)
SELECT p.run_id, list(p.seq ORDER BY p.seq)[2] AS seq, p.account AS subject,
       strftime(make_timestamp((p.due_at + coalesce(json_extract(u.config, '$.utc_offset_minutes')::BIGINT, 0) * 60000000000) // 1000), '%Y-%m') AS period,
       count(*) AS notices, list(p.seq ORDER BY p.seq) AS seqs,
       'more than one notice for one account and period' AS problem
FROM periods p JOIN runs u ON u.run_id = p.run_id
GROUP BY p.run_id, p.account, period
HAVING count(*) > 1
