{# The daily models' rows a run rebuilds: the days in var('days') (the days whose events
   changed), every day when it is 'all', none when it is empty; a first build (no table yet)
   builds every day. #}
{% macro in_days(column) -%}
    {%- set days = var('days') -%}
    {%- if not is_incremental() or days == 'all' -%}
        TRUE
    {%- elif days | length > 0 -%}
        {{ column }} IN ({% for d in days %}DATE '{{ d }}'{% if not loop.last %}, {% endif %}{% endfor %})
    {%- else -%}
        FALSE
    {%- endif -%}
{%- endmacro %}

{% macro uuid_pattern() -%}
    '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
{%- endmacro %}

{% macro max_discount_case(tier_column) -%}
    CASE {{ tier_column }}
    {%- for tier, percent in var('max_discount_percent').items() %}
        WHEN '{{ tier }}' THEN {{ percent }}
    {%- endfor %}
    END
{%- endmacro %}
