-- id: SM-AR-009
-- description: arrears: a notice is released only at an allowed time: a send weekday, within the send hours, and not a day the calendar delivered before the release calls a holiday (local time of the run's config)
-- batch: true
-- domain: arrears
WITH released AS (
    SELECT d.run_id, d.seq, d.cause_seq, d.at, d.subject,
           d.at + coalesce(json_extract(u.config, '$.utc_offset_minutes')::BIGINT, 0) * 60000000000
               AS local_ns,
           json_extract(u.config, '$.send_from_hour')::BIGINT AS from_hour,
           json_extract(u.config, '$.send_until_hour')::BIGINT AS until_hour,
           json_extract(u.config, '$.send_weekdays')::BIGINT[] AS weekdays
    FROM decisions d JOIN runs u ON u.run_id = d.run_id
    WHERE d.kind = 'arrears-notice' AND d.status IN ('released', 'sent')
), judged AS (
    SELECT *, (local_ns // 3600000000000) % 24 AS hour,
           (local_ns // 86400000000000 + 3) % 7 AS weekday,  -- 1970-01-01 was a Thursday
           strftime(make_timestamp(local_ns // 1000), '%Y-%m-%d') AS day
    FROM released
), holidays AS (
    SELECT j.run_id, j.seq,
           max({'t': l.occurred_at, 'id': l.event_id,
                'holiday': coalesce(json_extract(e.data, '$.holiday')::BOOLEAN, false)}) AS stated
    FROM judged j
    JOIN deliveries l ON l.run_id = j.run_id AND l.type = 'CalendarDay' AND l.seq <= j.cause_seq
    JOIN events e ON e.run_id = l.run_id AND e.position = l.position
     AND json_extract_string(e.data, '$.date') = j.day
    GROUP BY ALL
)
SELECT j.run_id, j.seq, j.at, j.subject, j.day, j.hour, j.weekday,
       CASE WHEN NOT list_contains(j.weekdays, j.weekday) THEN 'released on a day notices may not go out'
            WHEN j.hour < j.from_hour OR j.hour >= j.until_hour THEN 'released outside the send hours'
            ELSE 'released on a holiday' END AS problem
FROM judged j LEFT JOIN holidays h ON h.run_id = j.run_id AND h.seq = j.seq
WHERE NOT list_contains(j.weekdays, j.weekday) OR j.hour < j.from_hour OR j.hour >= j.until_hour
   OR coalesce(h.stated.holiday, false)
