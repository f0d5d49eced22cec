"""Every setting of the project: its environment variable, its default and what it means, read
once (on first use) into a frozen dataclass.

The Dagster resources (defs/resources.py), the command line, the run without Dagster and the
benchmark harness take their defaults from here; nothing under logic/ or lakehouse/ reads the
environment. `settings()` is cached: a process reads its environment once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path

from etl_poc.logic.spec import DEFAULT_START_DATE

POLARS_ENGINES = ("in-memory", "streaming")
# Rows a Polars run holds at once by default. Measured on `medium` (10M events, plain run):
# pieces of 3M rows peaked at 3.7 GB, of 1M rows at 1.8 GB, in the same time (53.7 s, 49.9 s):
# the peak follows the piece, not the window.
DEFAULT_POLARS_CHUNK_ROWS = 1_000_000


def _setting(env: str, default, help: str):
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    data_dir: Path = _setting(
        "ETL_POC_DATA_DIR",
        Path("data"),
        "landing/, the layers (layers/<engine>/<layer>/) and the Iceberg warehouse (warehouse/)",
    )
    start_date: date = _setting(
        "ETL_POC_START_DATE",
        DEFAULT_START_DATE,
        "the first daily partition; earlier events are rejected as BEFORE_START",
    )
    end_date: str = _setting(
        "ETL_POC_END_DATE",
        "",
        "the last daily partition (YYYY-MM-DD); empty: open-ended, up to the last complete day "
        "(make demo and make ui set the demo data's last day)",
    )
    automation: str = _setting(
        "ETL_POC_AUTOMATION",
        "on",
        "on: the landing sensor and declarative automation start running with the daemon; off: "
        "they start stopped (make demo launches its own runs)",
    )
    sensor_lookback_days: int = _setting(
        "ETL_POC_SENSOR_LOOKBACK_DAYS",
        3,
        "on its first tick the landing sensor requests no day older than this many days before "
        "the last partition",
    )
    catalog_uri: str = _setting(
        "ETL_POC_CATALOG_URI",
        "",
        "SQLAlchemy URL of the Iceberg catalog; empty: the SQLite file <data>/warehouse/catalog.db",
    )
    ip_ranges_mmdb: str = _setting(
        "ETL_POC_IP_RANGES_MMDB",
        "",
        "a MaxMind MMDB country file; empty: the GeoLite2 data the geoip2fast package ships",
    )
    reports_dir: Path = _setting(
        "ETL_POC_REPORTS_DIR", Path("reports"), "where the benchmark asset and reports write"
    )
    measurements_dir: Path = _setting(
        "ETL_POC_MEASUREMENTS_DIR",
        Path("measurements"),
        "where the benchmark harness keeps its results (committed; make report reads them)",
    )
    bench_dir: Path = _setting(
        "ETL_POC_BENCH_DIR", Path("bench-data"), "the harness's landing data and runs"
    )
    spark_master: str = _setting("ETL_POC_SPARK_MASTER", "local[*]", "local[*] or spark://...")
    spark_driver_memory: str = _setting("ETL_POC_SPARK_DRIVER_MEMORY", "8g", "the driver's heap")
    spark_executor_memory: str = _setting(
        "ETL_POC_SPARK_EXECUTOR_MEMORY", "4g", "per executor (spark:// only)"
    )
    spark_driver_host: str = _setting(
        "ETL_POC_SPARK_DRIVER_HOST",
        "127.0.0.1",
        "the name a cluster's executors reach the driver by",
    )
    polars_chunk_rows: int = _setting(
        "ETL_POC_POLARS_CHUNK_ROWS",
        DEFAULT_POLARS_CHUNK_ROWS,
        "rows the Polars lineage holds at once (whole days or landing files); 0: the whole window",
    )
    polars_engine: str = _setting(
        "ETL_POC_POLARS_ENGINE", "in-memory", "Polars' in-memory or streaming engine"
    )
    duckdb_threads: int = _setting(
        "ETL_POC_DUCKDB_THREADS",
        0,
        "the DuckDB lineage's threads (0: one per core, DuckDB's default)",
    )
    duckdb_memory_limit: str = _setting(
        "ETL_POC_DUCKDB_MEMORY_LIMIT",
        "",
        "the DuckDB lineage's memory limit, e.g. 6GB, beyond which it spills to disk (empty: "
        "DuckDB's default, 80 % of RAM)",
    )
    lock_timeout_seconds: float = _setting(
        "ETL_POC_LOCK_TIMEOUT_SECONDS",
        600.0,
        "how long a run waits for another run of the same engine's days before it fails",
    )
    snapshot_retention_hours: float = _setting(
        "ETL_POC_SNAPSHOT_RETENTION_HOURS",
        168.0,
        "Iceberg snapshots (and unreferenced files) older than this are removed by maintenance",
    )
    oltp_url: str = _setting(
        "ETL_POC_OLTP_URL",
        "",
        "the operational database's PostgreSQL (postgresql://user@host:port/db, wal_level="
        "logical); empty: a server the project starts under <data>/postgres",
    )
    kafka_bootstrap: str = _setting(
        "ETL_POC_KAFKA_BOOTSTRAP",
        "",
        "the Kafka-protocol broker of the speed layer (host:port, e.g. the containers' Kafka); "
        "empty: a Tansu broker the project starts on a free loopback port",
    )
    stream_topic: str = _setting(
        "ETL_POC_STREAM_TOPIC",
        "clickstream.events",
        "the events topic (keyed by user_id); its dead-letter and late topics add .dlq, .late",
    )
    stream_partitions: int = _setting(
        "ETL_POC_STREAM_PARTITIONS", 4, "partitions of the events topic, created when missing"
    )
    stream_retention_hours: float = _setting(
        "ETL_POC_STREAM_RETENTION_HOURS", 168.0, "retention.ms of the topics the project creates"
    )
    stream_batch_messages: int = _setting(
        "ETL_POC_STREAM_BATCH_MESSAGES",
        50_000,
        "the most messages a streaming sessionizer takes into one micro-batch",
    )
    clickhouse_url: str = _setting(
        "ETL_POC_CLICKHOUSE_URL",
        "",
        "a ClickHouse server for the real-time tables (http://user@host:8123); empty: chdb, "
        "embedded ClickHouse, under <data>/stream/clickhouse-<engine>",
    )
    clickhouse_password: str = _setting(
        "ETL_POC_CLICKHOUSE_PASSWORD",
        "",
        "the password of ETL_POC_CLICKHOUSE_URL's user (kept out of the URL, which logs show)",
    )
    health_url: str = _setting(
        "ETL_POC_HEALTH_URL", "", "what `etl-poc health` asks (a container's health check)"
    )

    def __post_init__(self):
        if self.polars_engine not in POLARS_ENGINES:
            raise ValueError(
                f"ETL_POC_POLARS_ENGINE={self.polars_engine!r}: choose one of {POLARS_ENGINES}"
            )
        if self.end_date:
            try:
                date.fromisoformat(self.end_date)
            except ValueError:
                raise ValueError(
                    f"ETL_POC_END_DATE={self.end_date!r}: a date, YYYY-MM-DD"
                ) from None
        if self.automation not in ("on", "off"):
            raise ValueError(f"ETL_POC_AUTOMATION={self.automation!r}: on or off")
        if self.sensor_lookback_days < 0:
            raise ValueError(f"ETL_POC_SENSOR_LOOKBACK_DAYS={self.sensor_lookback_days}: 0 or more")
        if self.stream_partitions < 1 or self.stream_batch_messages < 1:
            raise ValueError(
                "ETL_POC_STREAM_PARTITIONS and ETL_POC_STREAM_BATCH_MESSAGES: 1 or more"
            )
        if self.polars_chunk_rows < 0:
            raise ValueError(f"ETL_POC_POLARS_CHUNK_ROWS={self.polars_chunk_rows}: 0 or more")

    @property
    def last_partition(self) -> date | None:
        """The last daily partition, None when the partitions are open-ended."""
        return date.fromisoformat(self.end_date) if self.end_date else None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings an environment gives: a variable that is unset or empty takes the
        default."""
        environ = os.environ if environ is None else environ
        values = {}
        for item in fields(cls):
            text = environ.get(item.metadata["env"], "")
            if not text:
                continue
            kind = type(item.default)
            try:
                values[item.name] = date.fromisoformat(text) if kind is date else kind(text)
            except ValueError as error:
                raise ValueError(f"{item.metadata['env']}={text!r}: {error}") from None
        return cls(**values)


def environment_variables() -> dict[str, tuple[object, str]]:
    """Every setting's environment variable -> (default, what it means)."""
    return {f.metadata["env"]: (f.default, f.metadata["help"]) for f in fields(Settings)}


def env_name(setting: str) -> str:
    """The environment variable of a setting, by its field name."""
    return next(f.metadata["env"] for f in fields(Settings) if f.name == setting)


@functools.cache
def settings() -> Settings:
    """This process's settings, read from its environment on first use."""
    return Settings.from_environment()
