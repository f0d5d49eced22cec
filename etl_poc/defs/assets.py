"""Every engine's lineage (spec.ENGINES x spec.LAYERS), built by one factory: each asset turns
its partition window into arguments, calls one method of its engine's runner
(lakehouse/<engine>_runner.py) and reports what it wrote and what that cost."""

import time
import warnings
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from etl_poc.lakehouse.iceberg import EVENTS_SCHEMA
from etl_poc.lakehouse.runner import in_chain_order, rejects_summary, runner_module
from etl_poc.logic.spec import ENGINES, LAYERS
from etl_poc.measure.layer_io import layer_io, rows_by_day
from etl_poc.measure.spark_stages import stage_mark, stage_summary, stages_since
from etl_poc.measure.usage import TreeSampler, engine_versions

from .landing import LANDING_CLICKSTREAM
from .metadata import (
    OWNERS,
    LayerCost,
    day_metadata,
    layer_metadata,
    markdown_table,
    rejects_metadata,
    table_schema,
)
from .partitions import daily
from .resources import START_DATE, DataDirectory, IcebergCatalog, IpRangesSource

IP_COUNTRY_RANGES = dg.AssetKey("ip_country_ranges")
PROCESSED_AT_TAG = "etl_poc/processed_at"
# The Iceberg events table's required columns: not nullable in its column schema.
EVENTS_REQUIRED = frozenset(f.name for f in EVENTS_SCHEMA.fields if f.required)
# A daily pipeline's tables: fresh when materialized within a day and a bit (warn), failing
# after two days without a run.
EVENTS_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=48), warn_window=timedelta(hours=26)
)


with warnings.catch_warnings():  # BackfillPolicy is beta in Dagster 1.13; we rely on it
    warnings.simplefilter("ignore", dg.BetaWarning)
    SINGLE_RUN = dg.BackfillPolicy.single_run()


def asset_key(engine: str, layer: str) -> dg.AssetKey:
    return dg.AssetKey([engine, next(item.asset for item in LAYERS if item.name == layer)])


def partition_window(context) -> tuple[date, date]:
    """The run's window [start, end) as dates (a single-run backfill covers several days)."""
    window = context.partition_time_window
    return window.start.date(), window.end.date()


def _lineage(derived: dict, upstream: dg.AssetKey | None) -> dict:
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


def _layer_spec(engine: str, index: int) -> dg.AssetSpec:
    layer = LAYERS[index].name
    upstream = asset_key(engine, LAYERS[index - 1].name) if index else None
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
    return dg.AssetSpec(
        key=asset_key(engine, layer),
        deps=deps,
        partitions_def=daily,
        group_name=engine,
        kinds={engine, "iceberg" if layer == "events" else "parquet"},
        description=LAYERS[index].description,
        owners=OWNERS,
        tags={"etl_poc/engine": engine, "etl_poc/layer": layer},
        freshness_policy=EVENTS_FRESHNESS if layer == "events" else None,
        skippable=True,  # a run may select any of an engine's layers (can_subset)
    )


def _processed_at(context) -> datetime:
    """One processing time per run, so every layer of a run judges 'in the future' alike."""
    processed_at = context.run.tags.get(PROCESSED_AT_TAG) or datetime.now(UTC)
    return datetime.fromisoformat(processed_at) if isinstance(processed_at, str) else processed_at


def build_engine_assets(engine: str) -> dg.AssetsDefinition:
    """One engine's lineage: raw -> cleansed -> enriched -> sessionized -> Iceberg, as one
    multi-asset that can run any subset of its layers. A run of several layers hands them to
    the runner's `run` together, which may compute the chain once (Polars does) rather than
    reading back each layer it just wrote; a layer run alone reads its stored input."""
    keys = {asset_key(engine, item.name): item.name for item in LAYERS}

    @dg.multi_asset(
        name=f"{engine}_lineage",
        specs=[_layer_spec(engine, index) for index in range(len(LAYERS))],
        can_subset=True,
        partitions_def=daily,
        backfill_policy=SINGLE_RUN,
        # Its engine's resource only: a Polars asset never needs a Spark session.
        required_resource_keys={"data_dir", "lakehouse", "ip_ranges", engine},
    )
    def _lineage_op(context: dg.AssetExecutionContext):
        data_dir: DataDirectory = context.resources.data_dir
        lakehouse: IcebergCatalog = context.resources.lakehouse
        ip_ranges: IpRangesSource = context.resources.ip_ranges
        selected = in_chain_order(keys[key] for key in context.selected_asset_keys)
        start, end = partition_window(context)
        engine_resource = getattr(context.resources, engine)
        # Before anything is read or written: the catalog answers (a run that cannot commit
        # its window must not rewrite the layers), and no other run of this engine's days
        # goes on meanwhile.
        catalog = lakehouse.catalog()
        engine_resource.hold_window(
            engine, data_dir.paths, start, end, context.run.run_id, lakehouse.uri
        )
        context.log.info(f"{engine} {', '.join(selected)}: [{start}, {end}) started")
        # Everything a layer costs is measured, each layer as a phase of one sampler (a fused
        # chain works its layers by turns): start-up (the engine's logic imported, a Spark
        # session once per run: the first layer's; the IP table: the enriched layer's), the
        # work including Spark's actions (every layer ends by writing), and its I/O. A JVM
        # is charged to Spark's steps only.
        stages: dict[str, list] = {}
        spark = None

        @contextmanager
        def phase(layer: str):
            mark = stage_mark(spark) if spark is not None else None
            with sampler.phase(layer):
                yield
            if spark is not None:
                stages.setdefault(layer, []).extend(stages_since(spark, mark))

        with TreeSampler(exclude=() if engine == "spark" else ("java",)) as sampler:
            startup = dict.fromkeys(selected, 0.0)
            with sampler.phase(selected[0]):
                began = time.perf_counter()
                runner = runner_module(engine).Runner(
                    data_dir.paths, START_DATE, _processed_at(context),
                    engine_resource.runtime(), ip_ranges.table,
                )  # fmt: skip
                startup[selected[0]] = time.perf_counter() - began
            spark = getattr(runner, "spark", None)
            session_seconds = engine_resource.take_startup_seconds()
            if "enriched" in selected:
                with sampler.phase("enriched"):
                    began = time.perf_counter()
                    runner.ip_ranges  # noqa: B018 (loaded here, so that it counts as start-up)
                    startup["enriched"] += time.perf_counter() - began
            done = runner.run(selected, start, end, context.run.run_id, catalog, phase)
            for layer, result in done:
                cost = LayerCost(
                    engine=engine,
                    window=(start, end),
                    usage=sampler.phase_usage(layer),
                    startup_seconds=startup[layer],
                    spark_session_seconds=session_seconds if layer == selected[0] else None,
                    io=layer_io(data_dir.paths, engine, layer, start, end, result),
                    versions=engine_versions(engine, spark),
                    spark_stages=(
                        stage_summary(stages.get(layer, [])) if spark is not None else None
                    ),
                )
                yield _materialized(context, engine, layer, start, end, result, cost, selected)

    return _lineage_op


def _materialized(context, engine, layer, start, end, result, cost, selected):
    data_dir: DataDirectory = context.resources.data_dir
    index = next(i for i, item in enumerate(LAYERS) if item.name == layer)
    upstream = asset_key(engine, LAYERS[index - 1].name) if index else None
    required = EVENTS_REQUIRED if layer == "events" else frozenset()
    metadata = layer_metadata(result, cost, required)
    metadata.update(_lineage(LAYERS[index].derived, upstream))
    metadata["run_layers"] = ", ".join(selected)
    metadata["inputs_in_memory"] = ", ".join(sorted(result.in_memory)) or "none"
    if "rejects" in LAYERS[index].outputs:
        metadata.update(rejects_metadata(*rejects_summary(data_dir.paths, engine, start, end)))
    key = asset_key(engine, layer)
    days = rows_by_day(data_dir.paths, engine, layer, start, end)
    for day, figures in day_metadata(days).items():
        context.add_asset_metadata(figures, asset_key=key, partition_key=day)
    context.log.info(
        f"{engine} {layer}: [{start}, {end}) wrote {result.rows:,} rows in "
        f"{cost.usage.wall_seconds:.1f} s" + (" (input in memory)" if result.in_memory else "")
    )
    return dg.MaterializeResult(asset_key=key, metadata=metadata)


with warnings.catch_warnings():  # the backfill_policy parameter is beta in Dagster 1.13
    warnings.simplefilter("ignore", dg.BetaWarning)

    @dg.asset(
        key=IP_COUNTRY_RANGES,
        group_name="reference",
        kinds={"polars"},
        description="The IP-to-country range table every engine joins against: GeoLite2-derived "
        "data shipped in the geoip2fast package, or the MaxMind MMDB file that "
        "`ETL_POC_IP_RANGES_MMDB` names; IPv4 and IPv6, special-purpose networks marked reserved. "
        "Name, date and licence in the metadata.",
        owners=OWNERS,
        # Unpartitioned, in a partitioned job (compare_engines): this policy lets the command line
        # run a partition range of that job as one run (`dg launch --partition-range`).
        backfill_policy=SINGLE_RUN,
    )
    def ip_country_ranges(ip_ranges: IpRangesSource) -> dg.MaterializeResult:
        ranges = ip_ranges.table()
        return dg.MaterializeResult(
            metadata={
                "ipv4_ranges": ranges.ipv4.height,
                "ipv6_ranges": ranges.ipv6.height,
                "dagster/row_count": ranges.ipv4.height + ranges.ipv6.height,
                "dagster/column_schema": table_schema(ranges.ipv4.schema),
                "preview": markdown_table(ranges.ipv4.head(5)),
                **{f"dataset_{k}": v for k, v in ranges.info.as_dict().items()},
            }
        )


with warnings.catch_warnings():  # the backfill_policy parameter is beta in Dagster 1.13
    warnings.simplefilter("ignore", dg.BetaWarning)
    ENGINE_ASSETS = [build_engine_assets(engine) for engine in ENGINES]
