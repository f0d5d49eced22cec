"""The runs without Dagster that the benchmarks measure: every engine's whole chain
(bench/plain.py --chain), the layers through a runner, and the engine benchmark over them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import polars as pl
import pytest

from etl_poc.bench import plain
from etl_poc.bench.engines import run_engine_benchmark


def _data(small_landing):
    return small_landing.manifest_path.parent.parent


@pytest.mark.parametrize(
    "engine", ["polars", pytest.param("spark", marks=pytest.mark.spark), "duckdb"]
)
def test_the_chain_writes_every_valid_event_once(small_landing, tmp_path, engine):
    arguments = ["--engine", engine, "--chain", "--data", str(_data(small_landing)),
                 "--processed-at", "2024-03-01T00:00:00+00:00", "--out", str(tmp_path)]  # fmt: skip
    if engine == "spark":  # as the benchmark runs it: a process (and a JVM) of its own
        env = {**os.environ, "ETL_POC_SPARK_MASTER": "local[1]",
               "ETL_POC_SPARK_DRIVER_MEMORY": "2g"}  # fmt: skip
        run = subprocess.run([sys.executable, "-m", "etl_poc.bench.plain", *arguments],
                             env=env, capture_output=True, text=True, check=False)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
    else:
        assert plain.main(arguments) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    expected = small_landing.manifest["expected"]
    assert result["rows"] == expected["valid_unique_events"]
    assert result["rejects"] == expected["must_reject"]
    written = tmp_path / "sessionized.parquet"  # a file, or Spark's directory of parts
    sessionized = pl.read_parquet(written / "*.parquet" if written.is_dir() else written)
    assert sessionized["event_id"].n_unique() == sessionized.height == result["rows"]


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_the_layers_without_dagster_reach_iceberg(small_landing, tmp_path, engine):
    data = tmp_path / "data"
    shutil.copytree(small_landing.manifest_path.parent, data / "landing")
    code = plain.main(["--engine", engine, "--data", str(data), "--out", str(tmp_path / "out"),
                       "--processed-at", "2024-03-01T00:00:00+00:00"])  # fmt: skip
    assert code == 0
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["rows"] == small_landing.manifest["expected"]["valid_unique_events"]
    assert set(result["layer_seconds"]) == {"raw", "cleansed", "enriched", "sessionized", "events"}


def test_engine_benchmark_records_runs(small_landing, tmp_path):
    result = run_engine_benchmark(
        _data(small_landing), "tiny", 1, tmp_path, engines=("polars", "duckdb")
    )
    saved = json.loads((tmp_path / "engine-benchmark-tiny.json").read_text())
    assert saved == result
    assert set(saved["summary"]) == {"polars", "duckdb"}
    for run in saved["runs"]:
        assert run["peak_rss_bytes"] > 0
        assert run["rows"] == small_landing.manifest["expected"]["valid_unique_events"]
