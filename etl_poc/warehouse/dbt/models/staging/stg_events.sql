-- The clickstream, one row per event, as the lakehouse holds it (sessionized, IP -> country).
SELECT
    event_id,
    user_id,
    session_id,
    session_start,
    CAST(session_start AS DATE) AS session_date,
    event_seq,
    event_ts,
    event_date,
    event_type,
    user_tier,
    device,
    country_code,
    page_url,
    product_id,
    search_query,
    transaction_id,
    amount,
    event_type IN ('PRODUCT_VIEW', 'ADD_TO_CART', 'REMOVE_FROM_CART') AS is_product_event,
    event_type = 'PURCHASE' AND transaction_id IS NOT NULL AND amount IS NOT NULL
        AS is_valid_purchase
FROM {{ source('lakehouse', 'events') }}
