"""The two lineages, built by one factory: each asset turns its partition window into
arguments, calls one runner method (lakehouse.runners) and reports what it wrote."""

import time
import warnings
from datetime import UTC, date, datetime

import dagster as dg

from etl_poc.lakehouse.runners import SparkRunner, layer_io
from etl_poc.measure.usage import TreeSampler, engine_versions

from .landing import LANDING_CLICKSTREAM
from .metadata import Measured, layer_metadata, markdown_table, table_schema
from .partitions import daily
from .resources import (
    START_DATE,
    DataDirectory,
    IcebergCatalog,
    IpRangesSource,
    PolarsResource,
    SparkResource,
)

ENGINES = ("polars", "spark")
IP_COUNTRY_RANGES = dg.AssetKey("ip_country_ranges")

# (layer: runner method, asset name, what it holds)
LAYERS = (
    ("raw", "raw_clickstream", "Landing rows of the window, typed: trimmed text, event_ts "
     "(UTC), event_date, normalised device/event_type/user_tier, the original text as raw_*, "
     "and reject_reason (null for a usable row). Per day of partition_date."),
    ("cleansed", "cleansed_clickstream", "Usable rows, one per event_id (the earliest, ties "
     "broken in a fixed order). Rejected rows go to the rejects layer with their reason."),
    ("enriched", "enriched_clickstream", "Cleansed rows with ip_status (public, private, "
     "invalid, missing) and country_code from a range join on the IP-to-country table."),
    ("sessionized", "sessionized_clickstream", "Enriched rows with 30-minute sessions: "
     "session_id (user_id@start), session_start, event_seq; sessions continue from the day "
     "before."),
    ("events", "clickstream_events", "The Iceberg tables <engine>.clickstream_events and "
     "<engine>.clickstream_rejects: each run replaces its window in one transaction."),
)  # fmt: skip

# Columns derived from upstream ones, for Dagster's column lineage.
_DERIVED = {
    "raw": {},
    "cleansed": {},
    "enriched": {"ip_status": ["ip_address"], "country_code": ["ip_address"]},
    "sessionized": {
        "session_id": ["user_id", "event_ts"],
        "session_start": ["user_id", "event_ts"],
        "event_seq": ["user_id", "event_ts", "event_id"],
    },
    "events": {},
}


def asset_key(engine: str, layer: str) -> dg.AssetKey:
    name = next(name for method, name, _ in LAYERS if method == layer)
    return dg.AssetKey([engine, name])


def partition_window(context) -> tuple[date, date]:
    """The run's window [start, end) as dates (a single-run backfill covers several days)."""
    window = context.partition_time_window
    return window.start.date(), window.end.date()


def _lineage(engine: str, layer: str, upstream: dg.AssetKey | None) -> dict:
    derived = _DERIVED[layer]
    if upstream is None or not derived:
        return {}
    return {
        "dagster/column_lineage": dg.TableColumnLineage(
            deps_by_column={
                column: [dg.TableColumnDep(asset_key=upstream, column_name=c) for c in sources]
                for column, sources in derived.items()
            }
        )
    }


def _runner(engine: str, resources: dict, processed_at: datetime):
    """The engine ready to work: its logic module imported, the IP ranges loaded, and for
    Spark the run's session (started by the first Spark asset of the run)."""
    paths, ranges = resources["data_dir"].paths, resources["ip_ranges"].table()
    if engine == "polars":
        import etl_poc.logic.polars_engine

        return resources["polars"].runner(paths, START_DATE, processed_at, ranges)
    import etl_poc.logic.spark_engine  # noqa: F401

    return SparkRunner(paths, START_DATE, processed_at, resources["spark"].session(), ranges)


def _layer_asset(engine: str, index: int) -> dg.AssetsDefinition:
    layer, _, description = LAYERS[index]
    upstream = asset_key(engine, LAYERS[index - 1][0]) if index else None
    deps = [upstream] if upstream else [LANDING_CLICKSTREAM]
    if layer == "enriched":
        deps.append(IP_COUNTRY_RANGES)
    if layer == "sessionized":
        # A day's sessions continue those of the day before: Dagster sees that dependency,
        # shows it, and orders the days of a backfill that is not a single run.
        previous_day = dg.TimeWindowPartitionMapping(
            start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True
        )
        deps.append(dg.AssetDep(asset_key(engine, layer), partition_mapping=previous_day))

    @dg.asset(
        key=asset_key(engine, layer),
        deps=deps,
        partitions_def=daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=engine,
        kinds={engine, "iceberg" if layer == "events" else "parquet"},
        description=description,
    )
    def _asset(
        context: dg.AssetExecutionContext,
        data_dir: DataDirectory,
        lakehouse: IcebergCatalog,
        spark: SparkResource,
        polars: PolarsResource,
        ip_ranges: IpRangesSource,
    ) -> dg.MaterializeResult:
        start, end = partition_window(context)
        # One processing time per run, so every layer of a run judges 'in the future' alike.
        processed_at = context.run.tags.get("etl_poc/processed_at") or datetime.now(UTC)
        if isinstance(processed_at, str):
            processed_at = datetime.fromisoformat(processed_at)
        resources = {"data_dir": data_dir, "spark": spark, "polars": polars, "ip_ranges": ip_ranges}
        # Everything the layer costs is measured: start-up (a Spark session, once per run),
        # the work including Spark's actions (every layer ends by writing), and its I/O.
        with TreeSampler(exclude=() if engine == "spark" else ("java",)) as sampler:
            began = time.perf_counter()
            runner = _runner(engine, resources, processed_at)
            startup = time.perf_counter() - began
            if layer == "events":
                result = runner.events(start, end, context.run.run_id, lakehouse.catalog())
            else:
                result = getattr(runner, layer)(start, end)
            io = layer_io(data_dir.paths, engine, layer, start, end, result)
        measured = Measured(
            engine=engine,
            window=(start, end),
            usage=sampler.usage,
            startup_seconds=startup,
            spark_session_seconds=spark.take_startup_seconds() if engine == "spark" else None,
            io=io,
            versions=engine_versions(engine, getattr(runner, "spark", None)),
        )
        metadata = layer_metadata(result, measured)
        metadata.update(_lineage(engine, layer, upstream))
        return dg.MaterializeResult(metadata=metadata)

    return _asset


def build_engine_assets(engine: str) -> list[dg.AssetsDefinition]:
    """One engine's lineage: raw -> cleansed -> enriched -> sessionized -> Iceberg."""
    with warnings.catch_warnings():  # BackfillPolicy is beta in Dagster 1.13; we rely on it
        warnings.simplefilter("ignore", dg.BetaWarning)
        return [_layer_asset(engine, i) for i in range(len(LAYERS))]


@dg.asset(
    key=IP_COUNTRY_RANGES,
    group_name="reference",
    kinds={"polars"},
    description="The IP-to-country range table both engines join against: GeoLite2-derived "
    "data shipped in the geoip2fast package, or the MaxMind MMDB file that "
    "ETL_POC_IP_RANGES_MMDB names; IPv4 and IPv6, special-purpose networks marked reserved. "
    "Name, date and licence in the metadata.",
)
def ip_country_ranges(ip_ranges: IpRangesSource) -> dg.MaterializeResult:
    ranges = ip_ranges.table()
    return dg.MaterializeResult(
        metadata={
            "ipv4_ranges": ranges.ipv4.height,
            "ipv6_ranges": ranges.ipv6.height,
            "dagster/row_count": ranges.ipv4.height + ranges.ipv6.height,
            "dagster/column_schema": table_schema(ranges.ipv4),
            "preview": markdown_table(ranges.ipv4.head(5)),
            **{f"dataset_{k}": v for k, v in ranges.info.as_dict().items()},
        }
    )


ENGINE_ASSETS = [a for engine in ENGINES for a in build_engine_assets(engine)]
