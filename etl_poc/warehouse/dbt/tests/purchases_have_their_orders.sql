-- Every purchase in the clickstream is an order in the operational database, or one deleted
-- since (a purged cancelled order: its delete is in the orders' change log). A warning, not an
-- error: an order purged before the first capture's snapshot leaves no trace to tell it by.
{{ config(severity='warn') }}
SELECT e.event_id, e.transaction_id
FROM {{ ref('stg_events') }} AS e
LEFT JOIN {{ ref('stg_orders') }} AS o ON o.order_id = e.transaction_id
WHERE e.is_valid_purchase AND o.order_id IS NULL
  AND e.transaction_id NOT IN (
      SELECT order_id FROM {{ source('lakehouse', 'orders_changes') }} WHERE __op = 'd'
  )
