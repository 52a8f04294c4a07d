-- id: HY-2
-- description: dosing: a dose is released only when the pump's runtime that local day as known at release (its released doses and the recorded pump-on commands delivered before, each effect key once) plus this dose stays within daily_cap_s (HY-006)
-- batch: true
-- domain: dosing
-- Recorded commands (ModbusWriteCommand with a duration) are how doses of an earlier controller
-- process reach a replay: counted once per effect key (a command carrying out a released dose
-- is the same dose), so a restart cannot reset the day's runtime. Releases are ordered by the
-- delivery or timer they were decided on (cause_seq), then by decision order.
WITH cfg AS (
    SELECT run_id,
           (json_extract(config, '$.dose_s')::DOUBLE * 1e9)::BIGINT AS dose_ns,
           (json_extract(config, '$.daily_cap_s')::DOUBLE * 1e9)::BIGINT AS cap_ns,
           json_extract(config, '$.utc_offset_minutes')::BIGINT * 60000000000 AS offset_ns,
           json_extract_string(config, '$.nutrient_relay') AS nutrient_relay,
           json_extract_string(config, '$.ph_relay') AS ph_relay
    FROM runs
), released AS (
    SELECT d.run_id, d.seq, d.cause_seq, d."at", d.subject, d.effect_key, c.dose_ns AS duration_ns,
           (d."at" + c.offset_ns) // 86400000000000 AS day
    FROM decisions d JOIN cfg c ON c.run_id = d.run_id
    WHERE d.kind = 'dose' AND d.status IN ('released', 'sent')
), commanded AS (
    SELECT l.run_id, l.seq AS cause_seq,
           (least(l.occurred_at, l.delivered_at) + c.offset_ns) // 86400000000000 AS day,
           json_extract_string(e.data, '$.device') || '/' ||
               CASE json_extract_string(e.data, '$.target') WHEN c.nutrient_relay THEN 'nutrient'
                    ELSE 'ph' END AS subject,
           coalesce(nullif(json_extract_string(e.data, '$.effect_key'), ''),
                    json_extract_string(e.data, '$.command_id')) AS effect_key,
           json_extract(e.data, '$.duration_ms')::BIGINT * 1000000 AS duration_ns
    FROM deliveries l JOIN events e ON e.run_id = l.run_id AND e.position = l.position
    JOIN cfg c ON c.run_id = l.run_id
    WHERE l.type = 'ModbusWriteCommand' AND json_extract(e.data, '$.duration_ms')::BIGINT > 0
      AND json_extract_string(e.data, '$.target') IN (c.nutrient_relay, c.ph_relay)
      AND json_extract_string(e.data, '$.value') = 'true'
), known AS (  -- for each release: every dose of the same pump and day known when it was made
    SELECT r.run_id, r.seq, r."at", r.subject, r.day, p.effect_key, p.duration_ns
    FROM released r JOIN released p
      ON p.run_id = r.run_id AND p.subject = r.subject AND p.day = r.day
     AND (p.cause_seq < r.cause_seq OR (p.cause_seq = r.cause_seq AND p.seq <= r.seq))
    UNION ALL
    SELECT r.run_id, r.seq, r."at", r.subject, r.day, m.effect_key, m.duration_ns
    FROM released r JOIN commanded m
      ON m.run_id = r.run_id AND m.subject = r.subject AND m.day = r.day AND m.cause_seq < r.cause_seq
), per_key AS (
    SELECT run_id, seq, "at", subject, day, effect_key, max(duration_ns) AS duration_ns
    FROM known GROUP BY ALL
)
SELECT k.run_id, k.seq, k."at", k.subject, k.day, count(*) AS doses, sum(k.duration_ns) AS runtime_ns,
       c.cap_ns, 'dose released although the day''s runtime with it is above the cap' AS problem
FROM per_key k JOIN cfg c ON c.run_id = k.run_id
GROUP BY k.run_id, k.seq, k."at", k.subject, k.day, c.cap_ns
HAVING sum(k.duration_ns) > c.cap_ns
