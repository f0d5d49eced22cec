-- Events, sessions and users per day (sessions counted on the day they start).
SELECT
    event_date,
    count(*) AS events,
    count(DISTINCT session_id) FILTER (WHERE event_seq = 1) AS sessions_started,
    count(DISTINCT user_id) AS users
FROM events
GROUP BY event_date
ORDER BY event_date
