"""The speed layer's commands: a sessionizer service, the producer, the live funnel, the
reconciliation, and the demo that runs them together (`etl-poc stream ...`)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from etl_poc.lakehouse.paths import Paths
from etl_poc.settings import Settings
from etl_poc.stream import broker as brokers
from etl_poc.stream import store as stores
from etl_poc.stream.sessionizer import STREAM_ENGINES, Writer, read_status


def topics_of(settings: Settings) -> brokers.Topics:
    return brokers.Topics(
        settings.stream_topic, settings.stream_partitions, settings.stream_retention_hours
    )


def database_of(engine: str) -> str:
    """The engine's ClickHouse database (its own, so that both can share a server)."""
    return f"{stores.DATABASE}_{engine}"


def store_path(data: Path, engine: str) -> Path:
    return Paths(data).stream / f"clickhouse-{engine}"


@contextlib.contextmanager
def opened_store(settings: Settings, data: Path, engine: str) -> Iterator[stores.Store]:
    """The engine's real-time store: its chdb directory, or the server's database."""
    with stores.opened(
        path=store_path(data, engine),
        url=settings.clickhouse_url,
        password=settings.clickhouse_password,
        database=database_of(engine),
    ) as store:
        yield store


def run_sessionizer(
    engine: str,
    settings: Settings,
    data: Path,
    bootstrap: str,
    *,
    idle_seconds: float | None = None,
    max_batches: int | None = None,
) -> dict:
    """One streaming sessionizer until idle (or stopped); its final status."""
    from etl_poc.reference.ip_ranges import load_ip_ranges

    if engine not in STREAM_ENGINES:
        raise ValueError(f"engine {engine!r}: choose one of {STREAM_ENGINES}")
    state_dir = Paths(data).stream
    with (
        brokers.started(state_dir, bootstrap) as broker,
        opened_store(settings, data, engine) as store,
    ):
        topics = topics_of(settings)
        brokers.ensure_topics(broker, topics)
        writer = Writer(engine, broker, topics, store, state_dir)
        options = {
            "ip_ranges": load_ip_ranges(settings.ip_ranges_mmdb or None),
            "start_date": settings.start_date,
            "batch_messages": settings.stream_batch_messages,
            "idle_seconds": idle_seconds,
            "max_batches": max_batches,
        }
        try:
            _run_engine(engine, settings, broker, topics, writer, options)
        finally:
            writer.close()
    return read_status(state_dir, engine) or {}


def _run_engine(engine, settings, broker, topics, writer, options) -> None:
    if engine == "polars":
        from etl_poc.stream import polars_stream

        polars_stream.run(broker, topics, writer, **options)
    else:
        from etl_poc.spark.session import build_spark_session
        from etl_poc.stream import spark_stream

        spark = build_spark_session(
            "local[2]" if settings.spark_master == "local[*]" else settings.spark_master,
            settings.spark_driver_memory,
            app_name="etl-poc-stream",
        )
        try:
            spark_stream.run(spark, broker, topics, writer, **options)
        finally:
            spark.stop()


def landing_files(data: Path, day: str | None) -> list[Path]:
    """The landing files in the order they landed (bulk, then each day's), or one day's."""
    from etl_poc.lakehouse.landing_zone import scan_landing_zone

    landing = Paths(data).landing
    files = [landing / info.path for info in scan_landing_zone(landing)]
    if day:
        files = [f for f in files if day in f.name]
    if not files:
        raise FileNotFoundError(
            f"no landing files under {landing}" + (f" for {day}" if day else "")
        )
    return sorted(files, key=lambda f: (not f.name.startswith("bulk"), f.name))


def live_funnel(store: stores.Store) -> pl.DataFrame:
    return pl.from_arrow(store.query(stores.LIVE_QUERIES["funnel"]))


def demo(settings: Settings, data: Path, *, rate: float, idle_seconds: float = 8.0) -> int:
    """Start a broker, run both sessionizers as services, produce every landing file at
    `rate`, wait until both are idle, then print the live funnel and the reconciliation."""
    from etl_poc.stream import producer

    state_dir = Paths(data).stream
    with brokers.started(state_dir, settings.kafka_bootstrap) as broker:
        topics = topics_of(settings)
        brokers.ensure_topics(broker, topics)
        print(f"broker: {broker.describe()}; topics {', '.join(topics.all())}")
        services = {}
        for engine in STREAM_ENGINES:
            command = [
                sys.executable, "-m", "etl_poc.cli", "stream", "run", "--engine", engine,
                "--bootstrap", broker.bootstrap, "--idle", str(idle_seconds), "--data", str(data),
            ]  # fmt: skip
            with open(state_dir / f"{engine}.log", "wb") as log:
                services[engine] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        time.sleep(2)
        files = landing_files(data, None)
        produced = producer.produce(broker, topics.events, files, Paths(data).landing, rate=rate)
        print(f"produced {produced.events:,} events in {produced.seconds:.1f} s "
              f"({produced.rate:,.0f}/s) from {len(files)} landing file(s)")  # fmt: skip
        failed = []
        for engine, service in services.items():
            if service.wait() != 0:
                failed.append(engine)
        if failed:
            tails = {e: (state_dir / f"{e}.log").read_text()[-1500:] for e in failed}
            raise RuntimeError(f"sessionizer(s) {', '.join(failed)} failed: {tails}")
    return report(settings, data)


def report(settings: Settings, data: Path) -> int:
    """Each engine's status, its live funnel, the reconciliation with the batch layer and
    whether the engines agree; 1 when anything disagrees."""
    from etl_poc.lakehouse.iceberg import open_catalog
    from etl_poc.stream import reconcile

    paths = Paths(data)
    events, ok = {}, True
    batch = reconcile.batch_events(open_catalog(paths.warehouse, settings.catalog_uri or None))
    for engine in STREAM_ENGINES:
        status = read_status(paths.stream, engine) or {}
        print(f"\n{engine}: {status.get('messages', 0):,} messages in "
              f"{status.get('busy_seconds', 0):.1f} s of work "
              f"({status.get('throughput_per_second', 0):,.0f}/s), {status.get('stored', 0):,} "
              f"stored, {status.get('dead_letters', 0)} dead letters, {status.get('late', 0)} "
              f"late, {status.get('duplicates', 0)} duplicates; latency produce->stored "
              f"{status.get('latency_ms', {})} ms; peak memory "
              f"{status.get('peak_rss_bytes', 0) / 2**30:.2f} GiB")  # fmt: skip
        table_format = pl.Config(
            tbl_rows=60, tbl_cols=-1, tbl_hide_dataframe_shape=True, tbl_width_chars=200
        )
        with opened_store(settings, data, engine) as store, table_format:
            print(f"live funnel ({store.where}):")
            print(live_funnel(store).tail(len(reconcile.FUNNEL_STEPS) * 2))
            events[engine] = (reconcile.stream_events(store), reconcile.set_aside(store))
            result = reconcile.reconcile(*events[engine], batch)
            print("reconciliation with the batch layer (polars.clickstream_events):")
            print(result.drop("samples"))
        ok &= bool(result["agrees"].all()) if not result.is_empty() else False
    agreement = reconcile.engines_agree(*events["polars"], *events["spark"])
    first, second = STREAM_ENGINES
    print(
        f"\nthe engines {'agree' if agreement['agree'] else 'DISAGREE'}: "
        f"{agreement['events'][0]:,} and {agreement['events'][1]:,} events stored, "
        f"{agreement['late'][0]} and {agreement['late'][1]} late ({first}, {second}); "
        f"{agreement['only_in_first']} only in {first}'s, {agreement['only_in_second']} only "
        f"in {second}'s, {agreement['session_differences']} session differences"
        + (f"; e.g. {', '.join(agreement['samples'])}" if agreement["samples"] else "")
    )
    return 0 if ok and agreement["agree"] else 1
