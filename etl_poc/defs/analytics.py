"""Analytics: the .sql files of etl_poc/analytics run in DuckDB over every engine's Iceberg
tables, each answer attached as a markdown table, and a check that every engine's tables give
the same answers."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from etl_poc.analytics.lakehouse_sql import queries, register_lakehouse, run_queries
from etl_poc.logic.spec import ENGINES

from .assets import asset_key
from .metadata import OWNERS, markdown_table
from .resources import IcebergCatalog

CLICKSTREAM_ANALYTICS = dg.AssetKey("clickstream_analytics")
SAME_ANSWERS_CHECK = "engines_give_the_same_answers"


@dg.asset(
    key=CLICKSTREAM_ANALYTICS,
    deps=[asset_key(engine, "events") for engine in ENGINES],
    group_name="analytics",
    kinds={"duckdb", "sql"},
    owners=OWNERS,
    # Once every engine's tables have new rows, and every blocking check on them passed.
    automation_condition=dg.AutomationCondition.eager()
    & dg.AutomationCondition.all_deps_blocking_checks_passed(),
    description="Daily activity, session lengths, bounce rate, top countries, device mix and "
    "the conversion funnel, from SQL files in etl_poc/analytics/sql run by DuckDB on each "
    "engine's Iceberg table; results also kept as tables `analytics_QUERY` in DuckDB.",
    check_specs=[
        dg.AssetCheckSpec(
            SAME_ANSWERS_CHECK,
            asset=CLICKSTREAM_ANALYTICS,
            description="Every query gives the same answer on Polars' and Spark's table.",
        )
    ],
)
def clickstream_analytics(lakehouse: IcebergCatalog, analytics_db: DuckDBResource):
    with analytics_db.get_connection() as connection:
        views = register_lakehouse(connection, lakehouse.catalog())
        engines = [v.removesuffix("_events") for v in views if v.endswith("_events")]
        results = run_queries(connection, engines)
        metadata = {"engines": ", ".join(engines)}
        sql = queries()
        for result in results:
            first = next(iter(result.by_engine.values()))
            connection.register("_answer", first.to_arrow())
            connection.execute(f"CREATE OR REPLACE TABLE analytics_{result.name} AS FROM _answer")
            connection.unregister("_answer")
            # The answer, and beside it the SQL that gave it.
            answer = markdown_table(first).value
            metadata[result.name] = dg.MetadataValue.md(
                f"{answer}\n\n```sql\n{sql[result.name].strip()}\n```"
            )
    disagreeing = [r.name for r in results if not r.engines_agree]
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(
        check_name=SAME_ANSWERS_CHECK,
        passed=not disagreeing and len(engines) == len(ENGINES),
        metadata={
            "queries": len(results),
            "engines": ", ".join(engines),
            "disagreeing": ", ".join(disagreeing) or "none",
        },
    )
