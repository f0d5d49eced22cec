-- Per product: what the clickstream did with it, and what the orders sold of it.
WITH clicks AS (
    SELECT
        product_id,
        count(*) FILTER (WHERE event_type = 'PRODUCT_VIEW') AS views,
        count(DISTINCT session_id) FILTER (WHERE event_type = 'PRODUCT_VIEW') AS viewing_sessions,
        count(*) FILTER (WHERE event_type = 'ADD_TO_CART') AS add_to_carts,
        count(*) FILTER (WHERE event_type = 'REMOVE_FROM_CART') AS removes_from_cart
    FROM {{ ref('stg_events') }}
    WHERE product_id IS NOT NULL
    GROUP BY product_id
),
sales AS (
    SELECT
        i.product_id,
        count(DISTINCT i.order_id) AS orders,
        sum(i.quantity) AS units_sold,
        sum(i.line_total) AS gross_sales
    FROM {{ ref('stg_order_items') }} AS i
    JOIN {{ ref('stg_orders') }} AS o USING (order_id)
    WHERE NOT o.is_cancelled
    GROUP BY i.product_id
)
SELECT
    p.product_id,
    p.name,
    p.category,
    p.price,
    coalesce(c.views, 0) AS views,
    coalesce(c.viewing_sessions, 0) AS viewing_sessions,
    coalesce(c.add_to_carts, 0) AS add_to_carts,
    coalesce(c.removes_from_cart, 0) AS removes_from_cart,
    coalesce(s.orders, 0) AS orders,
    coalesce(s.units_sold, 0) AS units_sold,
    coalesce(s.gross_sales, 0) AS gross_sales
FROM {{ ref('stg_products') }} AS p
LEFT JOIN clicks AS c USING (product_id)
LEFT JOIN sales AS s USING (product_id)
