-- id: HY-2
-- description: dosing: a pump's runtime on any local day (released doses x dose_s, plus recorded pump-on commands that carry out no released dose) never exceeds daily_cap_s (HY-006)
-- batch: true
-- domain: dosing
-- Recorded commands (ModbusWriteCommand with a duration) are how doses of an earlier controller
-- process reach a replay: counted once per effect key (or command id), so a restart cannot
-- reset the day's runtime.
WITH cfg AS (
    SELECT run_id,
           (json_extract(config, '$.dose_s')::DOUBLE * 1e9)::BIGINT AS dose_ns,
           (json_extract(config, '$.daily_cap_s')::DOUBLE * 1e9)::BIGINT AS cap_ns,
           json_extract(config, '$.utc_offset_minutes')::BIGINT * 60000000000 AS offset_ns,
           json_extract_string(config, '$.nutrient_relay') AS nutrient_relay,
           json_extract_string(config, '$.ph_relay') AS ph_relay
    FROM runs
), released AS (
    SELECT d.run_id, d.seq, d.at, d.subject, d.effect_key, c.dose_ns AS duration_ns
    FROM decisions d JOIN cfg c ON c.run_id = d.run_id
    WHERE d.kind = 'dose' AND d.status IN ('released', 'sent')
), commanded AS (
    SELECT l.run_id, min(l.seq) AS seq, min(least(l.occurred_at, l.delivered_at)) AS at,
           json_extract_string(e.data, '$.device') || '/' ||
               CASE json_extract_string(e.data, '$.target') WHEN c.nutrient_relay THEN 'nutrient'
                    ELSE 'ph' END AS subject,
           coalesce(nullif(json_extract_string(e.data, '$.effect_key'), ''),
                    json_extract_string(e.data, '$.command_id')) AS effect_key,
           max(json_extract(e.data, '$.duration_ms')::BIGINT) * 1000000 AS duration_ns
    FROM deliveries l JOIN events e ON e.run_id = l.run_id AND e.position = l.position
    JOIN cfg c ON c.run_id = l.run_id
    WHERE l.type = 'ModbusWriteCommand' AND json_extract(e.data, '$.duration_ms')::BIGINT > 0
      AND json_extract_string(e.data, '$.target') IN (c.nutrient_relay, c.ph_relay)
      AND json_extract_string(e.data, '$.value') = 'true'
    GROUP BY ALL
), runtime AS (
    SELECT run_id, seq, "at", subject, duration_ns FROM released
    UNION ALL
    SELECT m.run_id, m.seq, m."at", m.subject, m.duration_ns FROM commanded m
    WHERE NOT EXISTS (SELECT 1 FROM released r WHERE r.run_id = m.run_id AND r.effect_key = m.effect_key)
)
SELECT r.run_id, max(r.seq) AS seq, r.subject, (r.at + c.offset_ns) // 86400000000000 AS day,
       count(*) AS doses, sum(r.duration_ns) AS runtime_ns, c.cap_ns,
       'pump runtime on one day above the daily cap' AS problem
FROM runtime r JOIN cfg c ON c.run_id = r.run_id
GROUP BY r.run_id, r.subject, day, c.cap_ns
HAVING sum(r.duration_ns) > c.cap_ns
