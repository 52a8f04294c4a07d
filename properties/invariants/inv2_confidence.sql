-- id: INV-2
-- description: confidence: nothing external is released below its threshold, and an external action's bar is above every internal bar for the same subject
-- batch: true
SELECT run_id, seq, d.at, kind, subject, action, status, confidence, min_confidence,
       NULL::DOUBLE AS internal_bar, 'released below its confidence threshold' AS problem
FROM decisions d
WHERE external AND status IN ('released', 'sent') AND confidence < min_confidence
UNION ALL
SELECT d.run_id, d.seq, d.at, d.kind, d.subject, d.action, d.status, d.confidence,
       d.min_confidence, max(i.min_confidence) AS internal_bar,
       'external bar not above an internal bar for the same subject' AS problem
FROM decisions d
JOIN decisions i ON i.run_id = d.run_id AND i.subject = d.subject AND NOT i.external
WHERE d.external AND d.status IN ('released', 'sent') AND i.min_confidence >= d.min_confidence
GROUP BY ALL
