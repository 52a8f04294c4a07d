-- id: SM-AR-011
-- description: arrears: no notice is released while the statement in force (the latest delivered before the release by statement time, a reconciled one beating a provisional one of the same time) is provisional
-- batch: true
-- domain: arrears
WITH released AS (
    SELECT run_id, seq, cause_seq, "at", subject
    FROM decisions WHERE kind = 'arrears-notice' AND status IN ('released', 'sent')
), in_force AS (
    SELECT r.run_id, r.seq,
           max({'t': l.occurred_at, 'reconciled': NOT coalesce(e.provisional, false),
                'id': l.event_id}) AS statement
    FROM released r
    JOIN deliveries l ON l.run_id = r.run_id AND l.type = 'AccountBalance' AND l.seq < r.cause_seq
    JOIN events e ON e.run_id = l.run_id AND e.position = l.position AND e.account_id = r.subject
    GROUP BY ALL
)
SELECT r.run_id, r.seq, r.at, r.subject, f.statement.id AS statement_event, f.statement.t AS stated_at,
       'released while the statement in force is provisional' AS problem
FROM released r JOIN in_force f ON f.run_id = r.run_id AND f.seq = r.seq
WHERE NOT f.statement.reconciled
