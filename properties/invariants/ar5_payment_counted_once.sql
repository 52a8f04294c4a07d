-- id: AR-5
-- description: arrears: a held notice is cancelled as paid only when the payments, each payment id counted once, bring the debt under the threshold (SM-AR-004)
-- batch: true
-- domain: arrears
-- Accounts with a reversal delivered before the cancel are left out (see AR-1).
WITH cancels AS (
    SELECT d.run_id, d.seq, d.cause_seq, d.at, d.subject AS account
    FROM decisions d
    WHERE kind = 'arrears-notice' AND status = 'cancelled'
      AND list_contains(reasons, 'late_payment_cancelled')
      AND NOT list_contains(reasons, 'vulnerable_customer')
), inputs AS (
    SELECT l.run_id, l.seq, l.type, l.occurred_at, e.balance_minor, e.payment_id, e.amount_minor,
           e.account_id AS account
    FROM deliveries l JOIN events e ON e.run_id = l.run_id AND e.position = l.position
    WHERE l.type IN ('AccountBalance', 'PaymentReceived', 'PaymentReversed')
), known AS (
    SELECT c.run_id, c.seq, i.type, i.occurred_at, i.balance_minor, i.payment_id, i.amount_minor
    FROM cancels c JOIN inputs i
      ON i.run_id = c.run_id AND i.account = c.account AND i.seq <= c.cause_seq
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
    SELECT run_id, seq, sum(amount) AS paid FROM payments GROUP BY ALL
)
SELECT c.run_id, c.seq, c.at, c.account AS subject, s.balance, coalesce(p.paid, 0) AS paid,
       s.balance - coalesce(p.paid, 0) AS debt,
       json_extract(u.config, '$.debt_threshold_minor')::BIGINT AS threshold,
       'cancelled as paid although the debt, each payment counted once, is over the threshold' AS problem
FROM cancels c
JOIN statement s ON s.run_id = c.run_id AND s.seq = c.seq
JOIN runs u ON u.run_id = c.run_id
LEFT JOIN paid p ON p.run_id = c.run_id AND p.seq = c.seq
WHERE s.balance - coalesce(p.paid, 0) >= json_extract(u.config, '$.debt_threshold_minor')::BIGINT
  AND NOT EXISTS (SELECT 1 FROM known k WHERE k.run_id = c.run_id AND k.seq = c.seq
                  AND k.type = 'PaymentReversed')
