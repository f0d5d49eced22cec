"""The speed layer in the graph. The streaming sessionizers run as services (`etl-poc stream
run --engine spark|polars`), not in Dagster runs; Dagster observes them (an observable source
asset per engine: lag, throughput, latency, freshness, from its status file) and reconciles
them with the batch layer each day (an asset per day and its checks). The work is
etl_poc/stream's; this only wires it."""

import time
from datetime import date

import dagster as dg
import polars as pl

from etl_poc.stream import reconcile
from etl_poc.stream.sessionizer import STREAM_ENGINES

from .metadata import OWNERS, markdown_table
from .partitions import daily
from .resources import IcebergCatalog, RealtimeStore

GROUP = "speed_layer"
REFERENCE_ENGINE = "polars"  # the batch lineage the speed layer is reconciled with
RECONCILIATION = dg.AssetKey([GROUP, "speed_layer_reconciliation"])
BATCH_EVENTS = dg.AssetKey([REFERENCE_ENGINE, "clickstream_events"])


def sessionizer_key(engine: str) -> dg.AssetKey:
    return dg.AssetKey([GROUP, f"{engine}_sessionizer"])


def _observed(status: dict | None) -> dg.ObserveResult:
    if status is None:
        return dg.ObserveResult(metadata={"state": "not started yet (no status file)"})
    latency = status.get("latency_ms", {})
    return dg.ObserveResult(
        data_version=dg.DataVersion(str(status["stored"])),
        metadata={
            "state": "running" if time.time() - status["updated_at"] < 30 else "stopped or stalled",
            "seconds_since_update": round(time.time() - status["updated_at"], 1),
            "consumer_lag_messages": status["lag"],
            "throughput_per_second": status["throughput_per_second"],
            "latency_p50_ms": latency.get("p50", 0.0),
            "latency_p95_ms": latency.get("p95", 0.0),
            "latency_p99_ms": latency.get("p99", 0.0),
            "messages": status["messages"],
            "stored": status["stored"],
            "dead_letters": status["dead_letters"],
            "late": status["late"],
            "duplicates": status["duplicates"],
            "batches": status["batches"],
            "peak_rss_mib": round(status["peak_rss_bytes"] / 2**20, 1),
            "set_aside_by_reason": dg.MetadataValue.json(status.get("reasons", {})),
        },
    )


def _sessionizer(engine: str):
    spec = dg.AssetSpec(
        sessionizer_key(engine),
        group_name=GROUP,
        description=f"The {engine} streaming sessionizer service (`etl-poc stream run --engine "
        f"{engine}`), as observed: consumer lag, throughput, produce-to-stored latency "
        "percentiles, what it set aside, and when it last reported (its freshness).",
        kinds={engine, "kafka"},
        owners=OWNERS,
    )

    @dg.multi_observable_source_asset(specs=[spec], name=f"observe_{engine}_sessionizer")
    def observe(realtime: RealtimeStore):
        yield _observed(realtime.status(engine))

    return observe


SESSIONIZERS = [_sessionizer(engine) for engine in STREAM_ENGINES]

observe_streams = dg.define_asset_job(
    "observe_streams",
    selection=dg.AssetSelection.assets(*(sessionizer_key(e) for e in STREAM_ENGINES)),
    description="Record each streaming sessionizer's status as an observation.",
)
observe_streams_every_minute = dg.ScheduleDefinition(
    name="observe_streams_every_minute",
    job=observe_streams,
    cron_schedule="* * * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Observes the streaming services each minute (start it while they run).",
)


def _check_name(engine: str) -> str:
    return f"{engine}_stream_matches_batch"


AGREE_CHECK = "streaming_engines_agree"
CHECK_SPECS = [
    *(
        dg.AssetCheckSpec(
            _check_name(engine),
            asset=RECONCILIATION,
            description=f"The {engine} speed layer holds the day's batch events (or set them "
            "aside as late), nothing else, with the same sessions and funnel counts.",
        )
        for engine in STREAM_ENGINES
    ),
    dg.AssetCheckSpec(
        AGREE_CHECK,
        asset=RECONCILIATION,
        description="Spark's and Polars' stores hold the same events (stored or late), with "
        "the same sessions for the users without a late event in either.",
    ),
]


@dg.asset(
    key=RECONCILIATION,
    check_specs=CHECK_SPECS,
    group_name=GROUP,
    partitions_def=daily,
    deps=[BATCH_EVENTS, *(sessionizer_key(e) for e in STREAM_ENGINES)],
    kinds={"clickhouse", "iceberg"},
    owners=OWNERS,
    description="Per day, each streaming engine's store against the batch layer's "
    f"{REFERENCE_ENGINE}.clickstream_events: events (late events accounted), sessions (users "
    "without a late event), funnel steps; and the two engines against each other. With chdb, "
    "materialize it while the sessionizers are stopped (an embedded store has one user).",
)
def speed_layer_reconciliation(
    context: dg.AssetExecutionContext, realtime: RealtimeStore, lakehouse: IcebergCatalog
) -> dg.MaterializeResult:
    day = date.fromisoformat(context.partition_key)
    batch = reconcile.batch_events(lakehouse.catalog(), REFERENCE_ENGINE, day)
    results, stored = {}, {}
    for engine in STREAM_ENGINES:
        with realtime.opened(engine) as store:
            aside = reconcile.set_aside(store).join(batch, on="event_id", how="semi")
            stored[engine] = (reconcile.stream_events(store, day), aside)
        results[engine] = reconcile.reconcile(*stored[engine], batch)
    agreement = reconcile.engines_agree(*stored["polars"], *stored["spark"])
    table = pl.concat(
        [r.with_columns(engine=pl.lit(e)) for e, r in results.items() if not r.is_empty()],
        how="diagonal",
    )
    checks = [_engine_check(engine, result) for engine, result in results.items()]
    details = {k: v for k, v in agreement.items() if k != "agree"}
    checks.append(
        dg.AssetCheckResult(
            check_name=AGREE_CHECK,
            passed=agreement["agree"],
            metadata={"comparison": dg.MetadataValue.json(details)},
        )
    )
    return dg.MaterializeResult(
        check_results=checks,
        metadata={
            "reconciliation": markdown_table(table) if not table.is_empty() else "no events",
            "batch_events": batch.height,
            "engines": dg.MetadataValue.json(details),
        },
    )


def _engine_check(engine: str, result: pl.DataFrame) -> dg.AssetCheckResult:
    if result.is_empty():
        return dg.AssetCheckResult(
            check_name=_check_name(engine),
            passed=False,
            metadata={"result": "the store holds no event of the day"},
        )
    row = result.drop("samples").row(0, named=True)
    return dg.AssetCheckResult(
        check_name=_check_name(engine),
        passed=bool(row["agrees"]),
        metadata={
            **{k: v for k, v in row.items() if k not in ("day", "agrees")},
            "samples": result["samples"][0] or "none",
        },
    )


STREAM_ASSETS = [*SESSIONIZERS, speed_layer_reconciliation]
STREAM_JOBS = [observe_streams]
STREAM_SCHEDULES = [observe_streams_every_minute]
