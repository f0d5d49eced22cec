from __future__ import annotations

import json

from etl_poc.bench.generator import run_generator_benchmark


def test_harness_runs_fresh_processes_and_records_every_run(tmp_path):
    result = run_generator_benchmark(
        "small", repeat=2, formats="parquet", reports_dir=tmp_path, events=5000
    )
    saved = json.loads((tmp_path / "generator-benchmark-small-parquet.json").read_text())
    assert saved == result
    assert len(saved["runs"]) == 2
    for run in saved["runs"]:
        assert run["peak_rss_bytes"] > 50 * 2**20  # a Python process with Arrow and Polars
        assert run["wall_seconds"] > 0
        assert run["bytes_written"] > 0
    wall = saved["wall_seconds"]
    assert wall["min"] <= wall["median"] <= wall["max"]
    assert saved["host"]["cores"] >= 1
