-- id: GRID-1
-- description: grid: a day's energy balance verdict agrees with the readings delivered before it (each node and interval once): closed only when produced = consumed + losses + storage change within balance_tolerance, off only when it does not (GRID-001)
-- batch: true
-- domain: grid
WITH cfg AS (
    SELECT run_id, CAST(json_extract(config, '$.balance_tolerance') AS DOUBLE) AS tol FROM runs
), readings AS (
    SELECT l.run_id, l.seq, json_extract_string(e.data, '$.node_id') AS node,
           json_extract_string(e.data, '$.role') AS role,
           CAST(json_extract(e.data, '$.interval_start') AS BIGINT) AS istart,
           CAST(json_extract(e.data, '$.energy_wh') AS DOUBLE) AS wh
    FROM deliveries l JOIN events e ON e.run_id = l.run_id AND e.position = l.position
    WHERE e.type = 'GridReading'
), bal AS (
    SELECT run_id, seq, cause_seq, "at" AS d_at, subject, reasons[1] AS verdict,
           CAST(split_part(subject, ':', 2) AS BIGINT) AS day
    FROM decisions WHERE kind = 'energy-balance'
), firsts AS (  -- the first delivered reading of each node and interval counts, as in the projection
    SELECT b.run_id, b.seq, b.verdict, r.node, r.istart, arg_min(r.role, r.seq) AS role, arg_min(r.wh, r.seq) AS wh
    FROM bal b JOIN readings r ON r.run_id = b.run_id AND r.seq <= b.cause_seq
        AND r.istart // 86400000000000 = b.day
    GROUP BY ALL
), tot AS (
    SELECT run_id, seq, verdict,
           coalesce(sum(wh) FILTER (WHERE role IN ('solar', 'wind', 'gas')), 0) AS produced,
           coalesce(sum(wh) FILTER (WHERE role IN ('residential', 'commercial', 'industrial')), 0) AS consumed,
           coalesce(sum(wh) FILTER (WHERE role = 'line'), 0) AS losses,
           coalesce(sum(wh) FILTER (WHERE role = 'storage'), 0) AS storage
    FROM firsts GROUP BY ALL
)
SELECT t.run_id, t.seq, b.d_at AS "at", b.subject, t.verdict, t.produced, t.consumed, t.losses, t.storage,
       t.produced - t.consumed - t.losses - t.storage AS residual,
       CASE WHEN t.verdict = 'balance_closed' THEN 'closed, but the delivered readings do not balance'
            ELSE 'off, but the delivered readings balance' END AS problem
FROM tot t JOIN bal b ON b.run_id = t.run_id AND b.seq = t.seq JOIN cfg c ON c.run_id = t.run_id
WHERE (t.verdict = 'balance_closed'
       AND abs(t.produced - t.consumed - t.losses - t.storage) > c.tol * abs(t.produced) * 1.000001)
   OR (t.verdict = 'balance_off'
       AND abs(t.produced - t.consumed - t.losses - t.storage) < c.tol * abs(t.produced) * 0.999999)
