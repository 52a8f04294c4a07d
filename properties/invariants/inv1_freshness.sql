-- id: INV-1
-- description: freshness: no customer-facing or irreversible decision rests on an input older than its freshness bound at decision time, judged from the inputs it cites as they were delivered, not only from the time it states
-- batch: true
-- A decision with external effect must say how fresh its input is; one that does not is
-- reported too, because freshness that is not stated cannot be checked (SM-AR-001).
-- The stated input_time is checked against the facts: every input the decision cites must
-- have been delivered before it, and the freshest of them must be within the bound. A
-- projection that bounds device clocks (its config has clock_ahead_tolerance_s) is judged
-- on trusted times, least(source time, receive time, delivery time): it may not state an
-- input time later than any input it cites was received (a device clock ahead, SM-AR-010).
WITH claimed AS (
    SELECT d.run_id, d.seq, d.cause_seq, d.at, d.kind, d.subject, d.action, d.status,
           d.input_time, d.freshness_ns, d.inputs,
           json_extract(u.config, '$.clock_ahead_tolerance_s') IS NOT NULL AS bounds_clocks
    FROM decisions d JOIN runs u ON u.run_id = d.run_id
    WHERE (d.external OR d.irreversible) AND d.status IN ('released', 'sent')
), cited AS (
    SELECT run_id, seq, cause_seq, bounds_clocks, unnest(inputs) AS event_id FROM claimed
), seen AS (
    SELECT c.run_id, c.seq, c.event_id,
           min(CASE WHEN c.bounds_clocks THEN least(l.occurred_at, l.recorded_at, l.delivered_at)
                    ELSE l.occurred_at END) AS trusted
    FROM cited c LEFT JOIN deliveries l
      ON l.run_id = c.run_id AND l.event_id = c.event_id AND l.seq <= c.cause_seq
    GROUP BY ALL
), basis AS (
    SELECT run_id, seq, count(*) AS cited, count(trusted) AS delivered,
           max(trusted) AS trusted_time
    FROM seen GROUP BY ALL
)
SELECT c.run_id, c.seq, c.at, c.kind, c.subject, c.action, c.status, c.input_time,
       b.trusted_time, c.freshness_ns, c.at - c.input_time AS age_ns,
       c.at - b.trusted_time AS derived_age_ns,
       CASE WHEN c.input_time IS NULL OR c.freshness_ns IS NULL THEN 'freshness not stated'
            WHEN c.at - c.input_time > c.freshness_ns THEN 'input older than its freshness bound'
            WHEN b.delivered < b.cited THEN 'rests on an input not delivered before it'
            WHEN c.input_time > b.trusted_time
                THEN 'states an input time later than any input it cites was received'
            ELSE 'every input it cites is older than its freshness bound' END AS problem
FROM claimed c LEFT JOIN basis b ON b.run_id = c.run_id AND b.seq = c.seq
WHERE c.input_time IS NULL OR c.freshness_ns IS NULL OR c.at - c.input_time > c.freshness_ns
   OR b.delivered < b.cited OR c.input_time > b.trusted_time
   OR c.at - b.trusted_time > c.freshness_ns
