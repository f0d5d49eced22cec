"""The benchmark harness end to end on tiny data, and its arithmetic."""

from __future__ import annotations

import json

import pytest

from etl_poc.bench.pipeline import run_pipeline_benchmark
from etl_poc.report.pipeline_runs import summarize


def _run(kind, engine, wall, attempt=1):
    return {"kind": kind, "engine": engine, "attempt": attempt, "wall_seconds": wall,
            "peak_rss_bytes": 2**30, "cpu_utilisation": 1.0, "cpu_seconds": wall}  # fmt: skip


def test_medians_and_the_derived_figures():
    runs = [
        _run("dagster", "polars", 11.0), _run("dagster", "polars", 13.0, 2),
        _run("dagster", "polars", 12.0, 3), _run("plain", "polars", 10.0),
        _run("floor", "floor", 3.0), _run("dagster", "spark", 60.0),
        _run("dagster", "duckdb", 18.0),
    ]  # fmt: skip
    summary = summarize(runs)
    polars = summary["by_run_kind"]["dagster/polars"]
    assert polars["wall_seconds"] == {"median": 12.0, "min": 11.0, "max": 13.0}
    assert polars["runs"] == 3
    assert summary["derived"] == {
        "polars_over_io_floor": 4.0,
        "dagster_overhead_polars": pytest.approx(0.2),
        "spark_over_polars": 5.0,
        "duckdb_over_polars": 1.5,
    }
    # The plain run's chain computed once: the fused chain's ratio to the floor too.
    fused = {**_run("plain", "polars", 6.0), "result": {"fused_chain": True}}
    derived = summarize([*runs, fused])["derived"]
    assert derived["polars_fused_over_io_floor"] == pytest.approx((6.0 + 10.0) / 2 / 3.0)


def test_a_failed_run_is_recorded_apart_not_averaged_in():
    failed = {**_run("dagster", "spark", 30.0, 2), "failed": True, "error": "OutOfMemoryError"}
    summary = summarize([_run("dagster", "spark", 60.0), failed])
    assert summary["by_run_kind"]["dagster/spark"]["wall_seconds"]["median"] == 60.0
    assert summary["by_run_kind"]["dagster/spark"]["runs"] == 1
    assert summary["failed"]["dagster/spark"]["runs"] == 1
    assert summary["failed"]["dagster/spark"]["error"] == "OutOfMemoryError"
    assert summary["failed"]["dagster/spark"]["wall_seconds"]["median"] == 30.0


@pytest.mark.spark
@pytest.mark.slow
def test_the_harness_runs_end_to_end_on_tiny_data(tmp_path):
    reports = tmp_path / "reports"
    result = run_pipeline_benchmark("2000", 1, reports, tmp_path / "scratch")
    kinds = {(r["kind"], r["engine"]) for r in result["runs"]}
    assert kinds == {("dagster", "polars"), ("dagster", "spark"), ("dagster", "duckdb"),
                     ("plain", "polars"), ("floor", "floor")}  # fmt: skip
    assert all(r["wall_seconds"] > 0 and r["peak_rss_bytes"] > 0 for r in result["runs"])
    saved = json.loads((reports / "benchmark-2000.json").read_text())
    assert saved["summary"]["derived"].keys() == {
        "polars_over_io_floor", "dagster_overhead_polars", "spark_over_polars",
        "duckdb_over_polars", "polars_fused_over_io_floor",
    }  # fmt: skip
    plain = next(r for r in result["runs"] if r["kind"] == "plain")
    assert plain["result"]["fused_chain"] is True  # Polars' chain, computed once
    # The per-layer comparison, from the assets' own metadata of the same runs.
    assert saved["graph"]["sources"] == {e: f"bench_{e}" for e in ("polars", "spark", "duckdb")}
    assert saved["graph"]["window"] == "[2024-01-01, 2024-02-04)"
    text = (reports / "benchmark-2000.md").read_text()
    assert "Dagster overhead on Polars" in text
    assert (reports / "benchmark-2000.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_a_variant_runs_with_its_settings_on_its_cpus(tmp_path, monkeypatch):
    """Settings reach the runs (Polars works in pieces of 300 rows, streaming) and are
    recorded with the CPUs the runs were pinned to. A catalog on a server in the caller's
    environment (as in the containers) is not the runs': they use their warehouse's."""
    import dagster as dg

    monkeypatch.setenv("ETL_POC_CATALOG_URI", "postgresql+psycopg2://nobody@127.0.0.1:1/none")
    reports = tmp_path / "reports"
    settings = {"ETL_POC_POLARS_ENGINE": "streaming", "ETL_POC_POLARS_CHUNK_ROWS": "300"}
    result = run_pipeline_benchmark(
        "2000", 1, reports, tmp_path / "scratch", engines=("polars",), plain=(), floor=False,
        label="2000-variant", settings=settings, cpus="0",
    )  # fmt: skip
    saved = json.loads((reports / "benchmark-2000-variant.json").read_text())
    assert saved["settings"] == settings
    assert saved["cpus"] == "0"
    assert saved["spark_cluster"] is None
    assert [r["kind"] for r in result["runs"]] == ["dagster"]
    home = tmp_path / "scratch" / "dagster-2000-variant"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(
            dg.AssetKey(["polars", "cleansed_clickstream"])
        )
        pieces = event.asset_materialization.metadata["window_pieces"].value
    assert pieces > 3
    with pytest.raises(ValueError, match="label"):
        run_pipeline_benchmark("2000", 1, reports, tmp_path / "scratch", settings=settings)
    server = {"ETL_POC_CATALOG_URI": "postgresql+psycopg2://u@127.0.0.1:5432/db"}
    with pytest.raises(ValueError, match="empty warehouse"):
        run_pipeline_benchmark("2000", 1, reports, tmp_path / "scratch", label="x", settings=server)
