-- Events and sessions per device.
SELECT
    device,
    count(*) AS events,
    count(DISTINCT session_id) AS sessions,
    round(100.0 * count(*) / sum(count(*)) OVER (), 2) AS percent_of_events
FROM events
GROUP BY device
ORDER BY events DESC, device
