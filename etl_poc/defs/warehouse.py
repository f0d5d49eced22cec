"""The warehouse in the graph: every dbt model an asset (dagster-dbt's @dbt_assets; each dbt
test an asset check), downstream of the Iceberg tables its sources name (the reference
engine's clickstream_events, the oltp current state); and a check that the marts built from
every other engine's events are identical. The work is etl_poc/warehouse's; this only wires
it and records what it cost."""

import json

import dagster as dg
import polars as pl
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, dbt_assets

from etl_poc.logic.spec import ENGINES
from etl_poc.measure.usage import TreeSampler
from etl_poc.warehouse import marts, project, raw

from .metadata import OWNERS, markdown_table
from .resources import IcebergCatalog, Warehouse

GROUP = "warehouse"
REFERENCE_ENGINE = ENGINES[0]
IDENTICAL_CHECK = "marts_identical_across_engines"
CHECKED_MART = dg.AssetKey([GROUP, "mart_daily_business_metrics"])


class Translator(DagsterDbtTranslator):
    """Models as warehouse/<model>, in the warehouse group, owned by the team; sources as the
    asset keys their meta names (the lakehouse's tables)."""

    def get_asset_key(self, dbt_resource_props) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        return dg.AssetKey([GROUP, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props) -> str | None:
        return GROUP

    def get_owners(self, dbt_resource_props):
        return OWNERS


TRANSLATOR = Translator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


@dbt_assets(manifest=project.manifest(), dagster_dbt_translator=TRANSLATOR, name="warehouse_dbt")
def warehouse_models(context: dg.AssetExecutionContext, warehouse: Warehouse,
                     lakehouse: IcebergCatalog):  # fmt: skip
    """The raw schema brought up to the lakehouse (a day at a time), then `dbt build` of the
    selected models with their tests; the daily marts rebuild the days whose events changed."""
    database = warehouse.database
    with TreeSampler() as sampler:
        loaded = raw.load(lakehouse.catalog(), database)
    days = loaded.changed_days(REFERENCE_ENGINE)
    raw_usage = {
        "raw_load_seconds": round(sampler.usage.wall_seconds, 3),
        "raw_load_peak_rss_mib": round(sampler.usage.peak_rss_bytes / 2**20, 1),
        "days_rebuilt": len(days),
    }
    context.log.info(
        f"raw: {len(loaded.copied.get(REFERENCE_ENGINE, []))} days of {REFERENCE_ENGINE}'s "
        f"events copied; the daily marts rebuild {len(days)} days; rows {loaded.rows}"
    )
    args = ["build", "--vars", json.dumps(project.variables(REFERENCE_ENGINE, days)),
            "--log-path", str(project.work_dir(database) / "logs")]  # fmt: skip
    invocation = warehouse.dbt().cli(args, context=context,
                                     target_path=project.work_dir(database) / "target")  # fmt: skip
    for event in invocation.stream():
        if isinstance(event, dg.Output):  # dbt's own figures, and the raw load's
            event = event.with_metadata({**event.metadata, **raw_usage})
        yield event


@dg.asset_check(
    asset=CHECKED_MART,
    name=IDENTICAL_CHECK,
    additional_deps=[dg.AssetKey([engine, "clickstream_events"]) for engine in ENGINES[1:]],
    description="The five marts built from every other engine's clickstream_events (a full "
    "build in a copy of the warehouse) are identical, row for row, to the reference engine's.",
    blocking=False,
)
def marts_identical_across_engines(warehouse: Warehouse, lakehouse: IcebergCatalog):
    database = warehouse.database
    loaded = raw.load(lakehouse.catalog(), database)
    others = [e for e in loaded.engines if e != REFERENCE_ENGINE]
    if not others:
        return dg.AssetCheckResult(
            passed=False,
            metadata={"result": "no other engine's clickstream_events in the lakehouse yet"},
        )
    rows, passed, seconds = [], True, {}
    for engine in others:
        scratch = project.work_dir(database) / f"compare-{engine}.duckdb"
        built = marts.build_for_engine(database, engine, scratch)
        seconds[engine] = round(built.seconds, 1)
        for mart, comparison in marts.compare_marts(database, scratch).items():
            rows.append({"engine": engine, "mart": mart, "result": comparison.summary()})
            passed = passed and comparison.equal
        scratch.unlink(missing_ok=True)
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "engines": ", ".join([REFERENCE_ENGINE, *others]),
            "comparisons": markdown_table(pl.DataFrame(rows)),
            "build_seconds": dg.MetadataValue.json(seconds),
        },
    )


WAREHOUSE_ASSETS = [warehouse_models]
WAREHOUSE_CHECKS = [marts_identical_across_engines]
