-- Per order: its items summed, its customer's tier, and whether it counts as revenue.
WITH items AS (
    SELECT
        order_id,
        count(*) AS item_lines,
        sum(quantity) AS units,
        sum(line_total) AS items_total
    FROM {{ ref('stg_order_items') }}
    GROUP BY order_id
)
SELECT
    o.order_id,
    o.user_id,
    u.tier AS user_tier,
    o.status,
    o.is_cancelled,
    o.order_date,
    o.created_at,
    o.subtotal,
    o.discount,
    o.discount_percent,
    o.tax,
    o.total,
    coalesce(i.item_lines, 0) AS item_lines,
    coalesce(i.units, 0) AS units,
    coalesce(i.items_total, 0) AS items_total,
    CASE WHEN o.is_cancelled THEN 0 ELSE o.total END AS recognised_revenue,
    o.discount > 0 AS has_discount
FROM {{ ref('stg_orders') }} AS o
LEFT JOIN items AS i USING (order_id)
LEFT JOIN {{ ref('stg_users') }} AS u USING (user_id)
