-- id: TR-002
-- description: trading: nothing is lost - every trade signal delivered gets exactly one final answer (sent, blocked, cancelled), never two
-- batch: true
-- domain: trading
-- A signal's answers are the order decisions about it for attempt 0 that are not a hold.
WITH signals AS (
    SELECT DISTINCT l.run_id, json_extract_string(e.data, '$.signal_id') AS signal_id
    FROM deliveries l JOIN events e ON e.run_id = l.run_id AND e.position = l.position
    WHERE l.type = 'TradeSignal'
), answers AS (
    SELECT run_id, subject AS signal_id, count(*) AS answers, list(seq ORDER BY seq) AS seqs
    FROM decisions
    WHERE kind = 'order' AND status <> 'held' AND effect_key = 'order:' || subject || '#0'
    GROUP BY ALL
)
SELECT s.run_id, coalesce(a.seqs[2], -1) AS seq, s.signal_id, coalesce(a.answers, 0) AS answers,
       CASE WHEN a.answers IS NULL THEN 'signal never answered (lost)'
            ELSE 'signal answered more than once' END AS problem
FROM signals s LEFT JOIN answers a ON a.run_id = s.run_id AND a.signal_id = s.signal_id
WHERE a.answers IS NULL OR a.answers > 1
