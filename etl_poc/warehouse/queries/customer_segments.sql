-- Customers per segment and tier: how many, their lifetime value and purchase frequency.
SELECT
    segment,
    tier,
    count(*) AS customers,
    sum(lifetime_value) AS lifetime_value,
    CAST(round(avg(lifetime_value), 2) AS DECIMAL(12, 2)) AS average_lifetime_value,
    round(avg(orders_per_30_days), 3) AS average_orders_per_30_days,
    round(avg(orders_per_session), 4) AS average_orders_per_session
FROM marts.mart_customer_analytics
GROUP BY 1, 2
ORDER BY segment, tier
