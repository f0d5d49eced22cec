from __future__ import annotations

import json

import polars as pl
import pytest
from etl_poc.report.engine_benchmark import run_engine_benchmark

from etl_poc.lakehouse import batch


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_batch_writes_every_valid_event_once(small_landing, tmp_path, engine):
    root = small_landing.manifest_path.parent
    code = batch.main(["--engine", engine, "--landing", str(root), "--out", str(tmp_path)])
    assert code == 0
    timings = json.loads((tmp_path / "timings.json").read_text())
    expected = small_landing.manifest["expected"]
    assert timings["rows"] == expected["valid_unique_events"]
    assert timings["rejects"] == expected["must_reject"]
    sessionized = pl.read_parquet(tmp_path / "sessionized.parquet")
    assert sessionized["event_id"].n_unique() == sessionized.height


def test_engine_benchmark_records_runs(small_landing, tmp_path):
    root = small_landing.manifest_path.parent
    result = run_engine_benchmark(root, "tiny", 1, tmp_path, engines=("polars", "duckdb"))
    saved = json.loads((tmp_path / "engine-benchmark-tiny.json").read_text())
    assert saved == result
    assert set(saved["summary"]) == {"polars", "duckdb"}
    for run in saved["runs"]:
        assert run["peak_rss_bytes"] > 0
        assert run["rows"] == small_landing.manifest["expected"]["valid_unique_events"]
