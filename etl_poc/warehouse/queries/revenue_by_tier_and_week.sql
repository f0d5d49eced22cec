-- Recognised revenue per tier and week, and each week's share of the tier's total.
SELECT
    date_trunc('week', order_date) AS week,
    user_tier,
    count(*) FILTER (WHERE NOT is_cancelled) AS orders,
    sum(recognised_revenue) AS revenue,
    round(sum(recognised_revenue) / sum(sum(recognised_revenue)) OVER (PARTITION BY user_tier), 4)
        AS share_of_tier
FROM intermediate.int_order_analytics
GROUP BY 1, 2
ORDER BY week, user_tier
