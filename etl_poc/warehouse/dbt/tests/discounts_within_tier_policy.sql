-- Business rule: no order is discounted beyond its customer's tier policy (tiers only go up,
-- so the current tier's limit holds for every earlier order too).
SELECT order_id, user_tier, discount_percent
FROM {{ ref('int_order_analytics') }}
WHERE discount_percent > {{ max_discount_case('user_tier') }}
   OR discount_percent < 0
   OR discount > subtotal
