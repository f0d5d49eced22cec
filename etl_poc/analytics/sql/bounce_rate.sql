-- Bounce rate: the share of sessions with a single event, overall and per device.
WITH sessions AS (
    SELECT session_id, any_value(device ORDER BY event_seq) AS device, count(*) AS events
    FROM events
    GROUP BY session_id
)
SELECT
    coalesce(device, 'all devices') AS device,
    count(*) AS sessions,
    count(*) FILTER (WHERE events = 1) AS bounces,
    round(100.0 * count(*) FILTER (WHERE events = 1) / count(*), 2) AS bounce_rate_percent
FROM sessions
GROUP BY ROLLUP (device)
ORDER BY device NULLS FIRST
