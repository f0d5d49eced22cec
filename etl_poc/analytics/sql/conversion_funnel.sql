-- The funnel PAGE_VIEW -> PRODUCT_VIEW -> ADD_TO_CART -> CHECKOUT_START -> PURCHASE: sessions
-- that reached each step after reaching the one before it (in time, within the session).
WITH step1 AS (
    SELECT session_id, min(event_ts) AS at FROM events
    WHERE event_type = 'PAGE_VIEW' GROUP BY session_id
), step2 AS (
    SELECT e.session_id, min(e.event_ts) AS at FROM events e JOIN step1 s USING (session_id)
    WHERE e.event_type = 'PRODUCT_VIEW' AND e.event_ts >= s.at GROUP BY e.session_id
), step3 AS (
    SELECT e.session_id, min(e.event_ts) AS at FROM events e JOIN step2 s USING (session_id)
    WHERE e.event_type = 'ADD_TO_CART' AND e.event_ts >= s.at GROUP BY e.session_id
), step4 AS (
    SELECT e.session_id, min(e.event_ts) AS at FROM events e JOIN step3 s USING (session_id)
    WHERE e.event_type = 'CHECKOUT_START' AND e.event_ts >= s.at GROUP BY e.session_id
), step5 AS (
    SELECT e.session_id, min(e.event_ts) AS at FROM events e JOIN step4 s USING (session_id)
    WHERE e.event_type = 'PURCHASE' AND e.event_ts >= s.at GROUP BY e.session_id
), counts AS (
    SELECT 1 AS step, 'PAGE_VIEW' AS event_type, count(*) AS sessions FROM step1
    UNION ALL SELECT 2, 'PRODUCT_VIEW', count(*) FROM step2
    UNION ALL SELECT 3, 'ADD_TO_CART', count(*) FROM step3
    UNION ALL SELECT 4, 'CHECKOUT_START', count(*) FROM step4
    UNION ALL SELECT 5, 'PURCHASE', count(*) FROM step5
)
SELECT
    step,
    event_type,
    sessions,
    round(100.0 * sessions / first_value(sessions) OVER (ORDER BY step), 2) AS percent_of_step_1,
    round(100.0 * sessions / lag(sessions) OVER (ORDER BY step), 2) AS percent_of_previous
FROM counts
ORDER BY step
