-- The ten countries with the most events (public addresses the range table places).
SELECT
    country_code,
    count(*) AS events,
    count(DISTINCT session_id) AS sessions,
    count(DISTINCT user_id) AS users,
    round(100.0 * count(*) / sum(count(*)) OVER (), 2) AS percent_of_placed_events
FROM events
WHERE country_code IS NOT NULL
GROUP BY country_code
ORDER BY events DESC, country_code
LIMIT 10
