"""The Spark session every Spark run uses, tuned fairly for the machine it runs on."""

from __future__ import annotations

import os


def build_spark_session(
    master: str = "local[*]",
    driver_memory: str = "8g",
    app_name: str = "etl-poc",
    executor_memory: str = "4g",
    driver_host: str = "127.0.0.1",
):
    """A session with adaptive execution, shuffle partitions sized to the cores, Arrow
    transfers, UTC as the session time zone (the engine's rules assume it) and no UI.
    Works unchanged against a spark:// master URL (executors then get `executor_memory` and
    this Python). `driver_host` is the name executors reach the driver by: the loopback
    address on one machine; in a container, the container's host name (the driver then
    listens on every interface of its container)."""
    import sys

    from pyspark.sql import SparkSession

    cores = os.cpu_count() or 1
    # Python workers the JVM starts outside a task's config (a Python data source's planner,
    # e.g. the speed layer's Kafka source) take PYSPARK_PYTHON: this Python, as the tasks'.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.driver.memory", driver_memory)
        .config("spark.executor.memory", executor_memory)
        .config("spark.pyspark.python", sys.executable)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.bindAddress", _bind_address(driver_host))
        .config("spark.driver.host", driver_host)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.adaptive.enabled", "true")
        .config("spark.sql.adaptive.coalescePartitions.enabled", "true")
        # Two tasks per core: enough to keep every core busy without scheduling overhead.
        .config("spark.sql.shuffle.partitions", str(2 * cores))
        .config("spark.default.parallelism", str(2 * cores))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .getOrCreate()
    )


def _bind_address(driver_host: str) -> str:
    return "127.0.0.1" if driver_host in ("127.0.0.1", "localhost") else "0.0.0.0"


def spark_frame(spark, frame):
    """A Polars frame as a Spark DataFrame, through Arrow. Spark has no unsigned long, so
    UInt64 columns (the IPv6 halves of the range table) go over as decimal(20,0)."""
    import polars as pl

    unsigned = [c for c, t in frame.schema.items() if t == pl.UInt64]
    return spark.createDataFrame(
        frame.with_columns(pl.col(unsigned).cast(pl.Decimal(20, 0))).to_arrow()
    )


def spark_ip_ranges(spark, ranges=None):
    """An IP-to-country table (default: the packaged one) prepared for spark_engine.enrich,
    cached."""
    from etl_poc.logic import spark_engine
    from etl_poc.reference.ip_ranges import load_packaged_ranges

    ranges = ranges or load_packaged_ranges()
    prepared = spark_engine.prepare_ranges(
        spark_frame(spark, ranges.ipv4), spark_frame(spark, ranges.ipv6)
    )
    return {name: table.cache() for name, table in prepared.items()}
