SELECT
    product_id,
    name,
    category,
    price,
    created_at,
    updated_at,
    price > 0 AS is_valid_price,
    name IS NOT NULL AND category IS NOT NULL AND price > 0 AS has_complete_info,
    list_filter([
        CASE WHEN NOT (price > 0) THEN 'price not positive' END,
        CASE WHEN name IS NULL THEN 'missing name' END,
        CASE WHEN category IS NULL THEN 'missing category' END
    ], lambda x: x IS NOT NULL) AS validation_errors
FROM {{ source('lakehouse', 'products') }}
