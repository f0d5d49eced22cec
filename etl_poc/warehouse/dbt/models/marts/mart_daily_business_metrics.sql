-- Per day and tier (and 'all' tiers): sessions, the funnel's steps and their conversion
-- rates, revenue and average order value. Daily, like mart_user_sessions.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{% if is_incremental() %}DELETE FROM {{ this }} WHERE {{ in_days('event_date') }}{% endif %}"
) }}
WITH sessions AS (
    SELECT * FROM {{ ref('mart_user_sessions') }} WHERE {{ in_days('session_date') }}
),
by_tier AS (
    SELECT
        session_date AS event_date,
        coalesce(user_tier, 'all') AS user_tier,
        count(*) AS sessions,
        count(DISTINCT user_id) AS users,
        count(*) FILTER (WHERE viewed_product) AS sessions_viewing_products,
        count(*) FILTER (WHERE added_to_cart) AS sessions_adding_to_cart,
        count(*) FILTER (WHERE started_checkout) AS sessions_starting_checkout,
        count(*) FILTER (WHERE converted) AS converted_sessions,
        sum(purchases) AS purchases,
        sum(revenue) AS revenue
    FROM sessions
    GROUP BY GROUPING SETS ((session_date, user_tier), (session_date))
)
SELECT
    event_date,
    user_tier,
    sessions,
    users,
    sessions_viewing_products,
    sessions_adding_to_cart,
    sessions_starting_checkout,
    converted_sessions,
    purchases,
    revenue,
    round(sessions_viewing_products / sessions, 4) AS product_view_rate,
    round(sessions_adding_to_cart / nullif(sessions_viewing_products, 0), 4) AS view_to_cart_rate,
    round(sessions_starting_checkout / nullif(sessions_adding_to_cart, 0), 4) AS cart_to_checkout_rate,
    round(converted_sessions / nullif(sessions_starting_checkout, 0), 4) AS checkout_to_purchase_rate,
    round(converted_sessions / sessions, 4) AS conversion_rate,
    CAST(round(revenue / nullif(purchases, 0), 2) AS DECIMAL(12, 2)) AS average_order_value
FROM by_tier
