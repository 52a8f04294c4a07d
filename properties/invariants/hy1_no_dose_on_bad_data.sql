-- id: HY-1
-- description: dosing: a dose is released only when the newest reading of its sensor (EC for nutrient, pH for pH-down) delivered before the release is valid (in range, not flagged) and within the freshness bound at release (HY-001, HY-003, HY-004)
-- batch: true
-- domain: dosing
-- An oracle over the deliveries, independent of the projection's state: the newest reading by
-- trusted time (min of source time and delivery time) among the frames delivered before the
-- release. No reading at all is a violation too (dosing on missing data).
WITH released AS (
    SELECT d.run_id, d.seq, d.cause_seq, d.at, d.subject,
           split_part(d.subject, '/', 1) AS device, split_part(d.subject, '/', 2) AS pump
    FROM decisions d WHERE d.kind = 'dose' AND d.status IN ('released', 'sent')
), cfg AS (
    SELECT run_id, config,
           (json_extract(config, '$.freshness_s')::DOUBLE * 1e9)::BIGINT AS freshness_ns
    FROM runs
), wanted AS (
    SELECT r.*, c.freshness_ns,
           CASE WHEN r.pump = 'nutrient' THEN json_extract_string(c.config, '$.ec_sensor')
                ELSE json_extract_string(c.config, '$.ph_sensor') END AS sensor,
           CASE WHEN r.pump = 'nutrient' THEN json_extract(c.config, '$.ec_min')::DOUBLE
                ELSE json_extract(c.config, '$.ph_min')::DOUBLE END AS lo,
           CASE WHEN r.pump = 'nutrient' THEN json_extract(c.config, '$.ec_max')::DOUBLE
                ELSE json_extract(c.config, '$.ph_max')::DOUBLE END AS hi
    FROM released r JOIN cfg c ON c.run_id = r.run_id
), frames AS (
    SELECT l.run_id, l.seq, least(l.occurred_at, l.delivered_at) AS trusted_at, e.data,
           json_extract_string(e.data, '$.device') AS device
    FROM deliveries l JOIN events e ON e.run_id = l.run_id AND e.position = l.position
    WHERE l.type = 'ModbusFrame'
), seen AS (
    SELECT w.run_id, w.seq, f.trusted_at,
           json_extract(f.data, '$.decoded.' || w.sensor)::DOUBLE AS value,
           json_extract(f.data, '$.invalid.' || w.sensor) IS NOT NULL AS flagged
    FROM wanted w JOIN frames f ON f.run_id = w.run_id AND f.device = w.device AND f.seq < w.cause_seq
    WHERE json_extract(f.data, '$.decoded.' || w.sensor) IS NOT NULL
), newest AS (
    SELECT run_id, seq, max(trusted_at) AS reading_at, arg_max(value, trusted_at) AS value,
           arg_max(flagged, trusted_at) AS flagged
    FROM seen GROUP BY run_id, seq
)
SELECT w.run_id, w.seq, w.at, w.subject, w.sensor, n.reading_at, n.value, w.at - n.reading_at AS age_ns,
       w.freshness_ns,
       CASE WHEN n.seq IS NULL THEN 'dose released with no reading of its sensor'
            WHEN n.flagged OR n.value < w.lo OR n.value > w.hi OR isnan(n.value)
                THEN 'dose released although the newest reading is invalid'
            ELSE 'dose released on a reading older than its freshness bound' END AS problem
FROM wanted w
LEFT JOIN newest n ON n.run_id = w.run_id AND n.seq = w.seq
WHERE n.seq IS NULL OR n.flagged OR n.value < w.lo OR n.value > w.hi OR isnan(n.value)
   OR w.at - n.reading_at > w.freshness_ns
