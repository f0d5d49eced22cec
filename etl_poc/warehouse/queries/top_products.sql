-- The ten best-selling products, with how they convert from view to cart to order.
SELECT sales_rank, product_id, name, category, price, views, add_to_carts, orders, units_sold,
       gross_sales, view_to_cart_rate, cart_to_order_rate
FROM marts.mart_product_performance
ORDER BY sales_rank
LIMIT 10
