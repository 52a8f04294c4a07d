-- id: AR-1
-- description: arrears: no notice is released while the debt known at release (the statement in force minus later payments, each payment id once) is below the threshold (SM-AR-003, SM-AR-012)
-- batch: true
-- domain: arrears
-- An oracle over the deliveries, independent of the projection's state. Accounts with a
-- reversal delivered before the release are left out: their debt depends on which
-- payments the statement already included.
WITH released AS (
    SELECT d.run_id, d.seq, d.cause_seq, d.at, d.subject AS account
    FROM decisions d WHERE kind = 'arrears-notice' AND status IN ('released', 'sent')
), inputs AS (
    SELECT l.run_id, l.seq, l.type, l.occurred_at, e.balance_minor, e.payment_id, e.amount_minor,
           e.account_id AS account
    FROM deliveries l JOIN events e ON e.run_id = l.run_id AND e.position = l.position
    WHERE l.type IN ('AccountBalance', 'PaymentReceived', 'PaymentReversed')
), known AS (
    SELECT r.run_id, r.seq, r.account, i.type, i.occurred_at, i.balance_minor, i.payment_id,
           i.amount_minor
    FROM released r JOIN inputs i
      ON i.run_id = r.run_id AND i.account = r.account AND i.seq < r.cause_seq
), statement AS (
    SELECT run_id, seq, max(occurred_at) AS stated_at,
           arg_max(balance_minor, occurred_at) AS balance
    FROM known WHERE type = 'AccountBalance' GROUP BY ALL
), payments AS (
    SELECT k.run_id, k.seq, k.payment_id AS payment_id,
           max(k.amount_minor) AS amount
    FROM known k JOIN statement s ON s.run_id = k.run_id AND s.seq = k.seq
    WHERE k.type = 'PaymentReceived' AND k.occurred_at > s.stated_at
    GROUP BY ALL
), paid AS (
    SELECT run_id, seq, sum(amount) AS paid, count(*) AS payments FROM payments GROUP BY ALL
)
SELECT r.run_id, r.seq, r.at, r.account AS subject, s.balance, coalesce(p.paid, 0) AS paid,
       s.balance - coalesce(p.paid, 0) AS debt,
       json_extract(u.config, '$.debt_threshold_minor')::BIGINT AS threshold,
       'notice released although the known debt is under the threshold' AS problem
FROM released r
JOIN statement s ON s.run_id = r.run_id AND s.seq = r.seq
JOIN runs u ON u.run_id = r.run_id
LEFT JOIN paid p ON p.run_id = r.run_id AND p.seq = r.seq
WHERE s.balance - coalesce(p.paid, 0) < json_extract(u.config, '$.debt_threshold_minor')::BIGINT
  AND NOT EXISTS (SELECT 1 FROM known k WHERE k.run_id = r.run_id AND k.seq = r.seq
                  AND k.type = 'PaymentReversed')
