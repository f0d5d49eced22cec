{# A composite key: no two rows share these columns' values (dbt_utils' test, which needs a
   package download; written here instead). #}
{% test unique_combination(model, columns) %}
SELECT {{ columns | join(', ') }}, count(*) AS n
FROM {{ model }}
GROUP BY {{ columns | join(', ') }}
HAVING count(*) > 1
{% endtest %}

{% test matches_pattern(model, column_name, pattern) %}
SELECT {{ column_name }} FROM {{ model }}
WHERE {{ column_name }} IS NOT NULL AND NOT regexp_full_match({{ column_name }}, {{ pattern }})
{% endtest %}
