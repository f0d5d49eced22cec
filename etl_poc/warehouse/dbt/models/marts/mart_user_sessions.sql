-- One row per session: when, how long, what was seen and bought. Daily: a run rebuilds the
-- sessions that started on var('days') (all when empty), the rest stay.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{% if is_incremental() %}DELETE FROM {{ this }} WHERE {{ in_days('session_date') }}{% endif %}"
) }}
SELECT
    session_id,
    any_value(user_id) AS user_id,
    arg_min(user_tier, event_seq) AS user_tier,
    arg_min(device, event_seq) AS device,
    arg_min(country_code, event_seq) AS country_code,
    min(session_start) AS session_start,
    max(event_ts) AS session_end,
    min(session_date) AS session_date,
    epoch(max(event_ts) - min(session_start)) AS duration_seconds,
    count(*) AS events,
    count(*) FILTER (WHERE event_type = 'PAGE_VIEW') AS page_views,
    count(DISTINCT page_url) AS distinct_pages,
    count(DISTINCT product_id) FILTER (WHERE event_type = 'PRODUCT_VIEW') AS products_viewed,
    count(*) FILTER (WHERE event_type = 'SEARCH') AS searches,
    bool_or(event_type = 'PRODUCT_VIEW') AS viewed_product,
    bool_or(event_type = 'ADD_TO_CART') AS added_to_cart,
    bool_or(event_type = 'CHECKOUT_START') AS started_checkout,
    bool_or(is_valid_purchase) AS converted,
    count(*) FILTER (WHERE is_valid_purchase) AS purchases,
    coalesce(sum(amount) FILTER (WHERE is_valid_purchase), 0) AS revenue
FROM {{ ref('stg_events') }}
WHERE {{ in_days('session_date') }}
GROUP BY session_id
