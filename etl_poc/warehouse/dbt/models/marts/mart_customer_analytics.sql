-- Per customer: lifetime value, purchase frequency and how often a session converts.
SELECT
    user_id,
    tier,
    country,
    signed_up_at,
    has_complete_info,
    orders,
    cancelled_orders,
    revenue AS lifetime_value,
    CAST(round(revenue / nullif(orders, 0), 2) AS DECIMAL(12, 2)) AS average_order_value,
    first_order_at,
    last_order_at,
    -- orders per 30 days between the first and the last (one order: null)
    round(CASE WHEN orders > 1
               THEN (orders - 1) * 30.0 * 86400 / nullif(epoch(last_order_at - first_order_at), 0)
          END, 3) AS orders_per_30_days,
    sessions,
    round(orders / nullif(sessions, 0), 4) AS orders_per_session,
    CASE
        WHEN orders = 0 THEN 'prospect'
        WHEN orders = 1 THEN 'one-time'
        WHEN orders < 5 THEN 'repeat'
        ELSE 'loyal'
    END AS segment
FROM {{ ref('int_customer_metrics') }}
