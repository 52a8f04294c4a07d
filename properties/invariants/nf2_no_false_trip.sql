-- id: NF-2
-- description: grid: no false trip; a released load shed rests on readings (its inputs) that, placed by their own interval, show at least confirm_intervals intervals with median frequency under trip_hz (NF-002)
-- batch: true
-- domain: grid
WITH cfg AS (
    SELECT run_id, CAST(json_extract(config, '$.trip_hz') AS DOUBLE) AS trip_hz,
           CAST(json_extract(config, '$.confirm_intervals') AS BIGINT) AS confirm,
           CAST(CAST(json_extract(config, '$.slot_s') AS DOUBLE) * 1e9 AS BIGINT) AS slot_ns
    FROM runs
), shed AS (
    SELECT run_id, seq, "at" AS d_at, effect_key, inputs FROM decisions
    WHERE kind = 'protection' AND status IN ('released', 'sent')
), inp AS (
    SELECT run_id, seq, unnest(inputs) AS event_id FROM shed
), samples AS (
    SELECT i.run_id, i.seq,
           CASE WHEN e.type = 'GridReading' THEN CAST(json_extract(e.data, '$.interval_start') AS BIGINT)
                ELSE e.occurred_at - e.occurred_at % c.slot_ns END AS slot,
           CAST(COALESCE(json_extract(e.data, '$.frequency_hz'),
                         json_extract(e.data, '$.decoded.frequency_hz')) AS DOUBLE) AS hz
    FROM inp i
    JOIN events e ON e.run_id = i.run_id AND e.event_id = i.event_id
    JOIN cfg c ON c.run_id = i.run_id
), slots AS (
    SELECT run_id, seq, slot, median(hz) AS hz FROM samples GROUP BY ALL
), judged AS (
    SELECT s.run_id, s.seq, c.confirm,
           count(sl.slot) FILTER (WHERE sl.hz < c.trip_hz) AS low_slots
    FROM shed s JOIN cfg c ON c.run_id = s.run_id
    LEFT JOIN slots sl ON sl.run_id = s.run_id AND sl.seq = s.seq
    GROUP BY ALL
)
SELECT s.run_id, s.seq, s.d_at AS "at", s.effect_key, j.low_slots, j.confirm,
       'load shed released without confirm_intervals low intervals by their own time' AS problem
FROM shed s JOIN judged j ON j.run_id = s.run_id AND j.seq = s.seq
WHERE j.low_slots < j.confirm
