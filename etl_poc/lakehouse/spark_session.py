"""The Spark session every Spark run uses, tuned fairly for the machine it runs on."""

from __future__ import annotations

import os


def build_spark_session(
    master: str = "local[*]", driver_memory: str = "8g", app_name: str = "etl-poc"
):
    """A session with adaptive execution, shuffle partitions sized to the cores, Arrow
    transfers, UTC as the session time zone (the engine's rules assume it) and no UI.
    Works unchanged against a spark:// master URL."""
    from pyspark.sql import SparkSession

    cores = os.cpu_count() or 1
    return (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
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
