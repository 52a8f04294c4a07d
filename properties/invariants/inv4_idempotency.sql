-- id: INV-4
-- description: idempotency: duplicated, replayed or re-evaluated inputs never produce a second external effect for the same effect key
-- batch: true
-- seq is the second effect, the one that should not have happened.
SELECT run_id, list(seq ORDER BY seq)[2] AS seq, effect_key, status, count(*) AS effects,
       list(seq ORDER BY seq) AS seqs, 'second external effect for the same key' AS problem
FROM decisions
WHERE external AND status IN ('released', 'sent') AND effect_key IS NOT NULL
GROUP BY run_id, effect_key, status
HAVING count(*) > 1
UNION ALL
SELECT run_id, seq, effect_key, status, 1, [seq], 'external effect without an idempotency key'
FROM decisions
WHERE external AND status IN ('released', 'sent') AND effect_key IS NULL
