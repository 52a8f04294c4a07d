-- id: HY-1
-- description: dosing: a dose is released only when the newest reading delivered before the release of every sensor the dose acts on (EC for nutrient or pH for pH-down, and the water level and the temperature for both) is valid (in range, not flagged) and within the freshness bound at release, with the level at or above level_low and the temperature within temp_low..temp_high (HY-001, HY-003, HY-004)
-- batch: true
-- domain: dosing
-- An oracle over the deliveries, independent of the projection's state: for each sensor a
-- released dose needs, the newest reading by trusted time (min of source time and delivery
-- time) among the frames delivered before the release. No reading at all is a violation too
-- (dosing on missing data). One row per dose and sensor that fails.
WITH released AS (
    SELECT d.run_id, d.seq, d.cause_seq, d.at, d.subject,
           split_part(d.subject, '/', 1) AS device, split_part(d.subject, '/', 2) AS pump
    FROM decisions d WHERE d.kind = 'dose' AND d.status IN ('released', 'sent')
), cfg AS (
    SELECT run_id, config,
           (json_extract(config, '$.freshness_s')::DOUBLE * 1e9)::BIGINT AS freshness_ns
    FROM runs
), dose AS (
    SELECT r.*, c.config, c.freshness_ns FROM released r JOIN cfg c ON c.run_id = r.run_id
), wanted AS (
    -- what each dose acts on: its own sensor, the water level and the temperature, each with
    -- its valid range and the band in which dosing is allowed (NULL: no band)
    SELECT dose.*, 'dosed' AS role,
           json_extract_string(config, CASE WHEN pump = 'nutrient' THEN '$.ec_sensor' ELSE '$.ph_sensor' END) AS sensor,
           json_extract(config, CASE WHEN pump = 'nutrient' THEN '$.ec_min' ELSE '$.ph_min' END)::DOUBLE AS lo,
           json_extract(config, CASE WHEN pump = 'nutrient' THEN '$.ec_max' ELSE '$.ph_max' END)::DOUBLE AS hi,
           NULL::DOUBLE AS band_lo, NULL::DOUBLE AS band_hi
    FROM dose
    UNION ALL
    SELECT dose.*, 'level', json_extract_string(config, '$.level_sensor'),
           json_extract(config, '$.level_min')::DOUBLE, json_extract(config, '$.level_max')::DOUBLE,
           json_extract(config, '$.level_low')::DOUBLE, NULL::DOUBLE
    FROM dose
    UNION ALL
    SELECT dose.*, 'temperature', json_extract_string(config, '$.temp_sensor'),
           json_extract(config, '$.temp_min')::DOUBLE, json_extract(config, '$.temp_max')::DOUBLE,
           json_extract(config, '$.temp_low')::DOUBLE, json_extract(config, '$.temp_high')::DOUBLE
    FROM dose
), frames AS (
    SELECT l.run_id, l.seq, least(l.occurred_at, l.delivered_at) AS trusted_at, e.data,
           json_extract_string(e.data, '$.device') AS device
    FROM deliveries l JOIN events e ON e.run_id = l.run_id AND e.position = l.position
    WHERE l.type = 'ModbusFrame'
), seen AS (
    SELECT w.run_id, w.seq, w.sensor, f.trusted_at,
           json_extract(f.data, '$.decoded.' || w.sensor)::DOUBLE AS value,
           json_extract(f.data, '$.invalid.' || w.sensor) IS NOT NULL AS flagged
    FROM wanted w JOIN frames f ON f.run_id = w.run_id AND f.device = w.device AND f.seq < w.cause_seq
    WHERE json_extract(f.data, '$.decoded.' || w.sensor) IS NOT NULL
), newest AS (
    SELECT run_id, seq, sensor, max(trusted_at) AS reading_at, arg_max(value, trusted_at) AS value,
           arg_max(flagged, trusted_at) AS flagged
    FROM seen GROUP BY run_id, seq, sensor
), judged AS (
    SELECT w.run_id, w.seq, w.at, w.subject, w.sensor, n.reading_at, n.value, w.at - n.reading_at AS age_ns,
           w.freshness_ns,
           CASE WHEN n.seq IS NULL THEN 'dose released with no reading of ' || w.sensor
                WHEN n.flagged OR n.value < w.lo OR n.value > w.hi OR isnan(n.value)
                    THEN 'dose released although the newest reading of ' || w.sensor || ' is invalid'
                WHEN w.at - n.reading_at > w.freshness_ns
                    THEN 'dose released on a reading of ' || w.sensor || ' older than its freshness bound'
                WHEN n.value < coalesce(w.band_lo, '-inf'::DOUBLE)
                    THEN 'dose released with ' || w.sensor || ' ' || n.value || ' below ' || w.band_lo
                WHEN n.value > coalesce(w.band_hi, 'inf'::DOUBLE)
                    THEN 'dose released with ' || w.sensor || ' ' || n.value || ' above ' || w.band_hi
           END AS problem
    FROM wanted w
    LEFT JOIN newest n ON n.run_id = w.run_id AND n.seq = w.seq AND n.sensor = w.sensor
)
SELECT * FROM judged WHERE problem IS NOT NULL
