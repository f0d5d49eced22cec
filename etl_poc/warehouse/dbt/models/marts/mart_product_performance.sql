-- Per product: views, carts and sales, and the rates between them.
SELECT
    *,
    round(add_to_carts / nullif(views, 0), 4) AS view_to_cart_rate,
    round(orders / nullif(add_to_carts, 0), 4) AS cart_to_order_rate,
    rank() OVER (ORDER BY gross_sales DESC, product_id) AS sales_rank
FROM {{ ref('int_product_analytics') }}
