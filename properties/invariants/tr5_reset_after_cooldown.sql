-- id: TR-005
-- description: trading: the kill switch goes ARMED -> TRIPPED -> cooldown -> manual reset -> ARMED; a reset is released only after a trip and its whole cooldown, and only on an operator's event
-- batch: true
-- domain: trading
WITH cfg AS (
    SELECT run_id, (json_extract(config, '$.cooldown_s')::DOUBLE * 1e9)::BIGINT AS cooldown_ns
    FROM runs
), trips AS (
    SELECT run_id, seq AS trip_seq, "at" AS trip_at, action AS prev_action FROM decisions
    WHERE kind = 'kill-switch' AND status = 'released' AND action IN ('trip', 'reset')
), resets AS (
    SELECT run_id, seq, "at" AS t, cause_seq FROM decisions
    WHERE kind = 'kill-switch' AND action = 'reset' AND status = 'released'
)
SELECT r.run_id, r.seq, r.t AS "at", p.trip_seq,
       CASE WHEN p.trip_seq IS NULL OR p.prev_action <> 'trip' THEN 'reset without a trip'
            WHEN r.t - p.trip_at < c.cooldown_ns THEN 'reset before the cooldown was over'
            ELSE 'reset not caused by an OperatorReset event' END AS problem
FROM resets r JOIN cfg c USING (run_id)
ASOF LEFT JOIN trips p ON p.run_id = r.run_id AND r.seq > p.trip_seq
LEFT JOIN deliveries l ON l.run_id = r.run_id AND l.seq = r.cause_seq
WHERE p.trip_seq IS NULL OR p.prev_action <> 'trip' OR r.t - p.trip_at < c.cooldown_ns
   OR l.type IS DISTINCT FROM 'OperatorReset'
