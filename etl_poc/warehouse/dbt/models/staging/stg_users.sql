-- Users, with data quality flags: an address that is not an e-mail, a missing name or country.
WITH flagged AS (
    SELECT
        user_id,
        email,
        full_name,
        country,
        tier,
        created_at,
        updated_at,
        email IS NOT NULL AND regexp_full_match(email, '[^@\s]+@[^@\s]+\.[^@\s]+') AS is_valid_email
    FROM {{ source('lakehouse', 'users') }}
)
SELECT
    *,
    is_valid_email AND full_name IS NOT NULL AND country IS NOT NULL AS has_complete_info,
    list_filter([
        CASE WHEN NOT is_valid_email THEN 'invalid email' END,
        CASE WHEN full_name IS NULL THEN 'missing name' END,
        CASE WHEN country IS NULL THEN 'missing country' END
    ], lambda x: x IS NOT NULL) AS validation_errors
FROM flagged
