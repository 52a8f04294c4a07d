-- id: HY-3
-- description: dosing: a pump relay whose state became unknown (write not acknowledged, read back different or not at all) leads to the safe state (a released safe-state decision for the tank) within safe_bound_s, and no dose of that pump is released until a newer reading shows the relay's state (HY-005)
-- batch: true
-- domain: dosing
WITH cfg AS (
    SELECT run_id, (json_extract(config, '$.safe_bound_s')::DOUBLE * 1e9)::BIGINT AS bound_ns,
           json_extract_string(config, '$.nutrient_relay') AS nutrient_relay,
           json_extract_string(config, '$.ph_relay') AS ph_relay
    FROM runs
), relay_events AS (
    SELECT l.run_id, l.seq, l.delivered_at, least(l.occurred_at, l.delivered_at) AS trusted_at,
           l.type, e.data, json_extract_string(e.data, '$.device') AS device
    FROM deliveries l JOIN events e ON e.run_id = l.run_id AND e.position = l.position
    WHERE l.type IN ('ModbusWriteResult', 'ModbusReadBack', 'ModbusFrame')
), unknown AS (
    SELECT r.run_id, r.seq, r.delivered_at, r.device, json_extract_string(r.data, '$.target') AS relay
    FROM relay_events r JOIN cfg c ON c.run_id = r.run_id
    WHERE json_extract_string(r.data, '$.target') IN (c.nutrient_relay, c.ph_relay)
      AND ((r.type = 'ModbusWriteResult' AND json_extract_string(r.data, '$.ok') = 'false')
        OR (r.type = 'ModbusReadBack' AND json_extract_string(r.data, '$.matches') = 'false'))
), known AS (
    SELECT r.run_id, r.seq, r.trusted_at, r.device, c.nutrient_relay AS relay
    FROM relay_events r JOIN cfg c ON c.run_id = r.run_id
    WHERE (r.type = 'ModbusFrame' AND json_extract(r.data, '$.decoded.' || c.nutrient_relay) IS NOT NULL)
       OR (r.type = 'ModbusReadBack' AND json_extract_string(r.data, '$.matches') = 'true'
           AND json_extract_string(r.data, '$.target') = c.nutrient_relay)
    UNION ALL
    SELECT r.run_id, r.seq, r.trusted_at, r.device, c.ph_relay AS relay
    FROM relay_events r JOIN cfg c ON c.run_id = r.run_id
    WHERE (r.type = 'ModbusFrame' AND json_extract(r.data, '$.decoded.' || c.ph_relay) IS NOT NULL)
       OR (r.type = 'ModbusReadBack' AND json_extract_string(r.data, '$.matches') = 'true'
           AND json_extract_string(r.data, '$.target') = c.ph_relay)
), safe AS (
    SELECT run_id, seq, "at", subject AS device FROM decisions
    WHERE kind = 'safe-state' AND status IN ('released', 'sent')
), doses AS (
    SELECT d.run_id, d.seq, d.cause_seq, d.at, split_part(d.subject, '/', 1) AS device,
           CASE split_part(d.subject, '/', 2) WHEN 'nutrient' THEN c.nutrient_relay ELSE c.ph_relay END AS relay
    FROM decisions d JOIN cfg c ON c.run_id = d.run_id
    WHERE d.kind = 'dose' AND d.status IN ('released', 'sent')
)
SELECT u.run_id, u.seq, u.delivered_at AS at, u.device, u.relay,
       'relay state unknown without the safe state within its bound' AS problem
FROM unknown u JOIN cfg c ON c.run_id = u.run_id
WHERE NOT EXISTS (SELECT 1 FROM safe s WHERE s.run_id = u.run_id AND s.device = u.device
                  AND s.at <= u.delivered_at + c.bound_ns)
UNION ALL
SELECT d.run_id, d.seq, d.at, d.device, d.relay,
       'dose released while its relay state is unknown' AS problem
FROM doses d JOIN unknown u ON u.run_id = d.run_id AND u.device = d.device AND u.relay = d.relay
     AND u.seq < d.cause_seq
WHERE NOT EXISTS (SELECT 1 FROM known k WHERE k.run_id = d.run_id AND k.device = d.device
                  AND k.relay = d.relay AND k.seq > u.seq AND k.seq < d.cause_seq
                  AND k.trusted_at > u.delivered_at)
