-- How sessions that convert differ from those that do not, per device and day of week.
SELECT
    device,
    dayname(session_date) AS day_of_week,
    converted,
    count(*) AS sessions,
    round(median(duration_seconds), 1) AS median_duration_seconds,
    round(avg(page_views), 2) AS average_page_views,
    round(avg(products_viewed), 2) AS average_products_viewed,
    round(quantile_cont(duration_seconds, 0.95), 1) AS p95_duration_seconds
FROM marts.mart_user_sessions
GROUP BY 1, 2, 3
ORDER BY device, day_of_week, converted
