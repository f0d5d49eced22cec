-- Conversion through the funnel per tier over the whole period (from the daily mart).
SELECT
    user_tier,
    CAST(sum(sessions) AS BIGINT) AS sessions,
    CAST(sum(converted_sessions) AS BIGINT) AS converted_sessions,
    round(sum(converted_sessions) / sum(sessions), 4) AS conversion_rate,
    round(sum(sessions_adding_to_cart) / nullif(sum(sessions_viewing_products), 0), 4) AS view_to_cart_rate,
    sum(revenue) AS revenue,
    CAST(round(sum(revenue) / nullif(sum(purchases), 0), 2) AS DECIMAL(12, 2)) AS average_order_value
FROM marts.mart_daily_business_metrics
GROUP BY user_tier
ORDER BY user_tier = 'all', revenue DESC
