"""The code location's resources, with their defaults from settings.py (the environment,
read once): what the assets are given, chosen in one place."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from etl_poc.lakehouse.paths import Paths
from etl_poc.settings import env_name, settings

START_DATE = settings().start_date
LAST_PARTITION = settings().last_partition


class DataDirectory(dg.ConfigurableResource):
    """ETL_POC_DATA_DIR (default ./data): `landing/`, the layers (`layers/ENGINE/LAYER/`) and
    the Iceberg warehouse (`warehouse/`)."""

    path: str = str(settings().data_dir)

    @property
    def paths(self) -> Paths:
        return Paths(Path(self.path))

    @property
    def landing(self) -> Path:
        return self.paths.landing


class ReportsDirectory(dg.ConfigurableResource):
    """ETL_POC_REPORTS_DIR (default ./reports): where benchmarks and reports are written."""

    path: str = str(settings().reports_dir)

    @property
    def folder(self) -> Path:
        return Path(self.path)


class IcebergCatalog(dg.ConfigurableResource):
    """The Iceberg catalog `lakehouse`, data files under `DATA/warehouse`. ETL_POC_CATALOG_URI
    names a SQLAlchemy database for the catalog (for example
    postgresql+psycopg2://user@127.0.0.1:5432/db); empty (the default) means the embedded
    SQLite file `DATA/warehouse/catalog.db`."""

    data_dir: DataDirectory
    uri: str = ""  # given by resources_for as a dg.EnvVar: the UI shows the name, not the URL

    @property
    def warehouse(self) -> Path:
        return self.data_dir.paths.warehouse

    def catalog(self):
        from etl_poc.lakehouse.iceberg import open_catalog

        return open_catalog(self.warehouse, self.uri or None)

    def exists(self) -> bool:
        from etl_poc.lakehouse.iceberg import catalog_exists

        return catalog_exists(self.warehouse, self.uri or None)


class OperationalDatabase(dg.ConfigurableResource):
    """The shop's PostgreSQL: ETL_POC_OLTP_URL names a server with wal_level=logical; empty
    (the default) means a server the project starts under DATA/postgres for each step."""

    data_dir: DataDirectory
    url: str = ""  # given by resources_for as a dg.EnvVar: the UI shows the name, not the URL
    lock_timeout_seconds: float = settings().lock_timeout_seconds

    @property
    def database(self):
        from etl_poc.oltp.sync import Database

        return Database(self.data_dir.paths, self.url, self.lock_timeout_seconds)


class Warehouse(dg.ConfigurableResource):
    """The warehouse dbt builds: a DuckDB file, DATA/warehouse.duckdb (its raw schema loaded
    from the lakehouse, then staging, intermediate and marts)."""

    data_dir: DataDirectory

    @property
    def database(self) -> Path:
        return self.data_dir.paths.dbt_warehouse

    def dbt(self):
        """dagster-dbt's resource for the project, its profile naming this warehouse file."""
        from dagster_dbt import DbtCliResource

        from etl_poc.warehouse import project

        return DbtCliResource(
            project_dir=str(project.PROJECT_DIR),
            profiles_dir=str(project.profiles_dir(self.database)),
            dbt_executable=project.dbt_executable(),
        )


class RealtimeStore(dg.ConfigurableResource):
    """The speed layer as Dagster sees it: each streaming sessionizer's status file (DATA/
    stream/status-<engine>.json) and its ClickHouse store (chdb under DATA/stream/clickhouse-
    <engine>, or the server ETL_POC_CLICKHOUSE_URL names)."""

    data_dir: DataDirectory
    url: str = ""  # given by resources_for as a dg.EnvVar: the UI shows the name, not the URL
    password: str = ""  # likewise

    def status(self, engine: str) -> dict | None:
        from etl_poc.stream.sessionizer import read_status

        return read_status(self.data_dir.paths.stream, engine)

    def opened(self, engine: str):
        """The engine's store for a block (chdb: only while its sessionizer is not running)."""
        from etl_poc.stream import store
        from etl_poc.stream.service import database_of, store_path

        return store.opened(
            path=store_path(self.data_dir.paths.data, engine), url=self.url,
            password=self.password, database=database_of(engine),
        )  # fmt: skip


class IpRangesSource(dg.ConfigurableResource):
    """The IP-to-country table: ETL_POC_IP_RANGES_MMDB names a MaxMind MMDB country file (for
    example your own GeoLite2-Country.mmdb); empty (the default) means the GeoLite2 data that
    the geoip2fast package ships."""

    mmdb_path: str = settings().ip_ranges_mmdb

    def table(self):
        from etl_poc.reference.ip_ranges import load_ip_ranges

        return load_ip_ranges(self.mmdb_path or None)


class EngineResource(dg.ConfigurableResource):
    """What every engine's resource does: hold the days of the windows its run touches
    (lakehouse.locks), from the first asset that asks until the run ends, so two runs of the
    same engine's days never interleave. ETL_POC_LOCK_TIMEOUT_SECONDS: how long a run waits."""

    lock_timeout_seconds: float = settings().lock_timeout_seconds
    _held = PrivateAttr(default=None)
    _windows = PrivateAttr(default_factory=set)

    def hold_window(
        self, engine: str, paths: Paths, start, end, run_id: str, catalog_uri: str = ""
    ) -> None:
        """Lock the window's days for this run, once per window (every layer asks); with a
        PostgreSQL catalog, for every host that shares it too."""
        import contextlib

        from etl_poc.lakehouse.locks import window_lock

        if (engine, start, end) in self._windows:
            return
        if self._held is None:
            self._held = contextlib.ExitStack()
        timeout = self.lock_timeout_seconds
        lock = window_lock(paths, engine, start, end, run_id, timeout, catalog_uri or None)
        self._held.enter_context(lock)
        self._windows.add((engine, start, end))

    def take_startup_seconds(self) -> float | None:
        """The engine's own start-up, once, to the first asset of the run that used it; None
        for an engine that runs in the run's process with nothing to start (Polars, DuckDB)."""
        return None

    def teardown_after_execution(self, context) -> None:
        if self._held is not None:
            self._held.close()
            self._held, self._windows = None, set()


class PolarsResource(EngineResource):
    """How the Polars lineage works a window: ETL_POC_POLARS_CHUNK_ROWS, the rows it holds in
    memory at once (whole days, or landing files, at a time; default 1,000,000, about 2 GB at
    the peak; 0: the whole window at once), and ETL_POC_POLARS_ENGINE, Polars' `in-memory`
    (default) or `streaming` engine."""

    chunk_rows: int = settings().polars_chunk_rows
    engine: str = settings().polars_engine

    def runtime(self):
        """What the Polars runner is given (lakehouse.polars_runner.PolarsRuntime)."""
        from etl_poc.lakehouse.polars_runner import PolarsRuntime

        return PolarsRuntime(self.chunk_rows, self.engine)


class DuckDBEngineResource(EngineResource):
    """How the DuckDB lineage's database works: ETL_POC_DUCKDB_THREADS (0: one per core) and
    ETL_POC_DUCKDB_MEMORY_LIMIT (empty: DuckDB's default), beyond which it spills to disk.
    Not dagster-duckdb's DuckDBResource (the analytics' connection to a database file): the
    lineage opens an in-memory database of its own per step."""

    threads: int = settings().duckdb_threads
    memory_limit: str = settings().duckdb_memory_limit

    def runtime(self):
        """What the DuckDB runner is given (lakehouse.duckdb_runner.DuckDBRuntime)."""
        from etl_poc.lakehouse.duckdb_runner import DuckDBRuntime

        return DuckDBRuntime(self.threads, self.memory_limit)


class SparkResource(EngineResource):
    """One Spark session per run, started on first use (a Polars-only run starts no JVM), so
    its start-up is paid once and reported. ETL_POC_SPARK_MASTER: local[*] (default) or a
    spark:// URL; ETL_POC_SPARK_DRIVER_HOST: the name a cluster's executors reach the driver
    by (default 127.0.0.1; the code location's host name in the containers). Written here
    rather than taken from dagster-pyspark (dropped): its PySparkResource starts the session
    when a run sets it up, its LazyPySparkResource on first use as this one does, but neither
    reports the start-up time (charged to the run's first Spark step here) or stops the
    session when the run ends (this one does, unless the process already had one: the tests'
    shared session)."""

    master: str = settings().spark_master
    driver_memory: str = settings().spark_driver_memory
    executor_memory: str = settings().spark_executor_memory  # spark:// only
    driver_host: str = settings().spark_driver_host
    _session = PrivateAttr(default=None)
    _owned = PrivateAttr(default=False)
    _startup_seconds = PrivateAttr(default=None)

    def runtime(self):
        """What the Spark runner is given: the run's session."""
        return self.session()

    def session(self):
        if self._session is None:
            from pyspark.sql import SparkSession

            from etl_poc.spark.session import build_spark_session

            started = time.perf_counter()
            self._owned = SparkSession.getActiveSession() is None
            self._session = build_spark_session(
                self.master,
                self.driver_memory,
                executor_memory=self.executor_memory,
                driver_host=self.driver_host,
            )
            self._startup_seconds = time.perf_counter() - started
        return self._session

    def take_startup_seconds(self) -> float | None:
        """The session's start-up time, once: to the first asset of the run that used it."""
        seconds, self._startup_seconds = self._startup_seconds, None
        return seconds

    def teardown_after_execution(self, context) -> None:
        if self._session is not None and self._owned:
            self._session.stop()  # a session this run did not start (tests) is left running
        super().teardown_after_execution(context)


def secret(setting: str) -> str | dg.EnvVar:
    """A setting that may hold a password (a catalog URL), as Dagster's EnvVar when it is set:
    the UI and GraphQL then show the variable's name, and the value is read when a run uses
    it; empty when it is not set."""
    return dg.EnvVar(env_name(setting)) if getattr(settings(), setting) else ""


def resources_for(data_dir: DataDirectory | None = None) -> dict:
    """Every resource of the code location, for a data directory (default: the environment's)."""
    from dagster_duckdb import DuckDBResource

    data_dir = data_dir or DataDirectory()
    return {
        "data_dir": data_dir,
        "lakehouse": IcebergCatalog(data_dir=data_dir, uri=secret("catalog_uri")),
        "oltp": OperationalDatabase(data_dir=data_dir, url=secret("oltp_url")),
        "warehouse": Warehouse(data_dir=data_dir),
        "realtime": RealtimeStore(
            data_dir=data_dir, url=secret("clickhouse_url"), password=secret("clickhouse_password")
        ),
        "reports": ReportsDirectory(),
        "spark": SparkResource(),
        "polars": PolarsResource(),
        "ip_ranges": IpRangesSource(),
        "duckdb": DuckDBEngineResource(),
        "analytics_db": DuckDBResource(database=str(data_dir.paths.analytics_database)),
    }


RESOURCES = resources_for()
