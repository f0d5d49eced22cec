SELECT
    order_id,
    line_number,
    product_id,
    quantity,
    unit_price,
    line_total,
    created_at,
    line_total = quantity * unit_price AS is_line_consistent,
    list_filter([
        CASE WHEN line_total <> quantity * unit_price THEN 'line_total <> quantity * unit_price' END,
        CASE WHEN quantity <= 0 THEN 'quantity not positive' END
    ], lambda x: x IS NOT NULL) AS validation_errors
FROM {{ source('lakehouse', 'order_items') }}
