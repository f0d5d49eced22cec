-- Per tier: customers, buyers, orders, revenue, order value and discounts against the tier's
-- policy (logic/spec.py's MAX_DISCOUNT_PERCENT).
WITH customers AS (
    SELECT tier, count(*) AS customers, count(*) FILTER (WHERE orders > 0) AS buyers,
           sum(sessions) AS sessions
    FROM {{ ref('int_customer_metrics') }}
    GROUP BY tier
),
orders AS (
    SELECT
        user_tier AS tier,
        count(*) FILTER (WHERE NOT is_cancelled) AS orders,
        count(*) FILTER (WHERE is_cancelled) AS cancelled_orders,
        sum(recognised_revenue) AS revenue,
        avg(total) FILTER (WHERE NOT is_cancelled) AS average_order_value,
        avg(CASE WHEN has_discount THEN 1.0 ELSE 0.0 END) FILTER (WHERE NOT is_cancelled)
            AS discounted_share,
        avg(discount_percent) FILTER (WHERE has_discount AND NOT is_cancelled)
            AS average_discount_percent,
        max(discount_percent) AS max_discount_percent_given
    FROM {{ ref('int_order_analytics') }}
    GROUP BY user_tier
)
SELECT
    c.tier,
    c.customers,
    c.buyers,
    round(c.buyers / c.customers, 4) AS buyer_share,
    c.sessions,
    coalesce(o.orders, 0) AS orders,
    coalesce(o.cancelled_orders, 0) AS cancelled_orders,
    coalesce(o.revenue, 0) AS revenue,
    CAST(round(coalesce(o.revenue, 0) / c.customers, 2) AS DECIMAL(12, 2)) AS revenue_per_customer,
    CAST(round(o.average_order_value, 2) AS DECIMAL(12, 2)) AS average_order_value,
    round(o.discounted_share, 4) AS discounted_share,
    round(o.average_discount_percent, 2) AS average_discount_percent,
    o.max_discount_percent_given,
    {{ max_discount_case('c.tier') }} AS max_discount_percent_allowed
FROM customers AS c
LEFT JOIN orders AS o USING (tier)
