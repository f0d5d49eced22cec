-- Orders, with their money checked: total = subtotal - discount + tax, the tax at the spec's
-- rate of (subtotal - discount), rounded half up to the cent.
WITH checked AS (
    SELECT
        order_id,
        user_id,
        status,
        subtotal,
        discount,
        discount_percent,
        tax,
        total,
        currency,
        created_at,
        updated_at,
        CAST(created_at AS DATE) AS order_date,
        status = 'cancelled' AS is_cancelled,
        total = subtotal - discount + tax AS is_total_consistent,
        tax = round((subtotal - discount) * {{ var('tax_rate_percent') }} / 100, 2) AS is_tax_consistent,
        regexp_full_match(order_id, {{ uuid_pattern() }}) AS is_valid_order_id
    FROM {{ source('lakehouse', 'orders') }}
)
SELECT
    *,
    list_filter([
        CASE WHEN NOT is_total_consistent THEN 'total <> subtotal - discount + tax' END,
        CASE WHEN NOT is_tax_consistent THEN 'tax not at the rate' END,
        CASE WHEN NOT is_valid_order_id THEN 'order_id not a UUID' END
    ], lambda x: x IS NOT NULL) AS validation_errors
FROM checked
