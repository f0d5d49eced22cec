"""Shared fixtures: generated landing zones, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl_poc.generate import GeneratorConfig, generate
from etl_poc.generate.landing import GenerationResult

SMALL_EVENTS = 100_000  # the `small` size: the figures the README quotes come from it


@pytest.fixture(scope="session")
def small_landing(tmp_path_factory) -> GenerationResult:
    """The `small` size in both formats, generated in this process, at <data>/landing."""
    out = tmp_path_factory.mktemp("data") / "landing"
    return generate(GeneratorConfig.for_size("small", out_dir=out, workers=1, progress=False))


def landing_file(result: GenerationResult, entry: dict, fmt: str) -> Path:
    return result.manifest_path.parent / entry["paths"][fmt]


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole test run: one core, no UI, UTC."""
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("etl-poc-tests")
        .config("spark.driver.memory", "2g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
