-- Per user: orders and revenue (cancelled orders excluded), sessions and events.
WITH orders AS (
    SELECT
        user_id,
        count(*) FILTER (WHERE NOT is_cancelled) AS orders,
        count(*) FILTER (WHERE is_cancelled) AS cancelled_orders,
        sum(recognised_revenue) AS revenue,
        sum(discount) FILTER (WHERE NOT is_cancelled) AS discounts,
        min(created_at) FILTER (WHERE NOT is_cancelled) AS first_order_at,
        max(created_at) FILTER (WHERE NOT is_cancelled) AS last_order_at
    FROM {{ ref('int_order_analytics') }}
    GROUP BY user_id
),
activity AS (
    SELECT
        user_id,
        count(DISTINCT session_id) AS sessions,
        count(*) AS events,
        min(event_ts) AS first_seen_at,
        max(event_ts) AS last_seen_at
    FROM {{ ref('stg_events') }}
    GROUP BY user_id
)
SELECT
    u.user_id,
    u.tier,
    u.country,
    u.created_at AS signed_up_at,
    u.has_complete_info,
    coalesce(o.orders, 0) AS orders,
    coalesce(o.cancelled_orders, 0) AS cancelled_orders,
    coalesce(o.revenue, 0) AS revenue,
    coalesce(o.discounts, 0) AS discounts,
    o.first_order_at,
    o.last_order_at,
    coalesce(a.sessions, 0) AS sessions,
    coalesce(a.events, 0) AS events,
    a.first_seen_at,
    a.last_seen_at
FROM {{ ref('stg_users') }} AS u
LEFT JOIN orders AS o USING (user_id)
LEFT JOIN activity AS a USING (user_id)
