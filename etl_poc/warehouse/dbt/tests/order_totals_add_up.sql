-- Business rule: an order's subtotal is the sum of its items, and its total = subtotal -
-- discount + tax, the tax at the spec's rate (orders whose items are not all in, none).
SELECT o.order_id, o.subtotal, i.items_total, o.discount, o.tax, o.total
FROM {{ ref('stg_orders') }} AS o
JOIN {{ ref('int_order_analytics') }} AS i USING (order_id)
WHERE o.subtotal <> i.items_total
   OR NOT o.is_total_consistent
   OR NOT o.is_tax_consistent
