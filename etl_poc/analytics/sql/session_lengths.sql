-- How long sessions last (first to last event), in buckets.
WITH sessions AS (
    SELECT session_id, date_diff('second', min(event_ts), max(event_ts)) AS seconds
    FROM events
    GROUP BY session_id
)
SELECT
    CASE
        WHEN seconds = 0 THEN '0 (one instant)'
        WHEN seconds < 60 THEN '< 1 min'
        WHEN seconds < 300 THEN '1-5 min'
        WHEN seconds < 900 THEN '5-15 min'
        WHEN seconds < 1800 THEN '15-30 min'
        WHEN seconds < 3600 THEN '30-60 min'
        ELSE '>= 60 min'
    END AS length,
    count(*) AS sessions,
    round(100.0 * count(*) / sum(count(*)) OVER (), 2) AS percent
FROM sessions
GROUP BY length, CASE
        WHEN seconds = 0 THEN 0 WHEN seconds < 60 THEN 1 WHEN seconds < 300 THEN 2
        WHEN seconds < 900 THEN 3 WHEN seconds < 1800 THEN 4 WHEN seconds < 3600 THEN 5
        ELSE 6 END
ORDER BY min(seconds)
