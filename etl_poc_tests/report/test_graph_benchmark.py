"""The engines' comparison from recorded figures: one window, medians over runs,
single-engine runs preferred, a clear error when no window is complete."""

from __future__ import annotations

import pytest

from etl_poc.logic.spec import ENGINES
from etl_poc.logic.spec import LAYER_NAMES as LAYERS
from etl_poc.measure.layer_io import LAYER_FIGURES as FIGURES
from etl_poc.report.charts import layers_png
from etl_poc.report.graph_benchmark import Measurement, compare, markdown


def _run(engine, run_id, job, window, seconds, when, session=None, layers=LAYERS):
    return [
        Measurement(
            engine=engine, layer=layer, run_id=run_id, job=job, window=window, timestamp=when,
            figures={**{name: 1.0 for name in FIGURES}, "seconds": seconds,
                     "peak_rss_bytes": 2**30 * (2 if engine == "spark" else 1)},
            spark_session_seconds=session if layer == "raw" else None,
        )
        for layer in layers
    ]  # fmt: skip


def test_medians_over_the_runs_of_the_latest_complete_window():
    w1, w2 = "[2024-01-01, 2024-01-31)", "[2024-01-31, 2024-02-01)"
    measurements = [
        *_run("polars", "p1", "polars_etl", w1, 1.0, 10),
        *_run("polars", "p2", "polars_etl", w1, 3.0, 11),
        *_run("polars", "p3", "polars_etl", w1, 2.0, 12),
        *_run("polars", "both", "compare_engines", w1, 9.0, 13),  # single-engine runs win
        *_run("spark", "s1", "spark_etl", w1, 10.0, 14, session=5.0),
        *_run("duckdb", "d1", "duckdb_etl", w1, 3.0, 15),
        *_run("duckdb", "d2", "bench_duckdb", w1, 5.0, 16),
        # A later window that only Polars and DuckDB (and only some layers of Spark) ran.
        *_run("polars", "p4", "polars_etl", w2, 1.0, 20),
        *_run("duckdb", "d3", "duckdb_etl", w2, 1.0, 20),
        *_run("spark", "s2", "spark_etl", w2, 1.0, 21, layers=("raw",)),
    ]
    comparison = compare(measurements)
    assert comparison.window == w1
    assert comparison.runs == {"polars": 3, "spark": 1, "duckdb": 2}
    assert comparison.sources == {
        "polars": "polars_etl", "spark": "spark_etl", "duckdb": "bench_duckdb, duckdb_etl",
    }  # fmt: skip
    assert comparison.layers["raw"]["polars"]["seconds"] == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert comparison.totals["polars"]["seconds"] == 2.0 * len(LAYERS)
    assert comparison.totals["spark"]["spark_session_seconds"] == 5.0
    assert comparison.ratio() == pytest.approx(5.0)
    assert comparison.ratio("raw") == pytest.approx(5.0)
    assert comparison.ratio(None, "duckdb") == pytest.approx(2.0)
    assert comparison.totals["spark"]["peak_rss_bytes"] == 2 * 2**30
    text = markdown(comparison)
    assert "| **total** | **10.0** [5.0-15.0] | **50.0** [50.0-50.0] | **20.0** [15.0-25.0] " \
           "| **5.0x** | **2.0x** |" in text  # fmt: skip
    assert "| layer | Polars s | Spark s | DuckDB s | Spark/Polars | DuckDB/Polars |" in text
    assert "Spark 5.00 s (of which the session 5.00 s, once per run), DuckDB 5.00 s" in text
    for engine in ("spark", "duckdb"):
        assert set(comparison.as_dict()[f"{engine}_over_polars"]) == {*LAYERS, "total"}


def test_a_chosen_window_is_compared_or_refused():
    w1, w2 = "[2024-01-01, 2024-01-31)", "[2024-01-31, 2024-02-01)"
    measurements = [
        *_run("polars", "p1", "polars_etl", w1, 1.0, 10),
        *_run("spark", "s1", "spark_etl", w1, 2.0, 11),
        *_run("duckdb", "d1", "duckdb_etl", w1, 2.0, 11),
        *_run("polars", "p2", "polars_etl", w2, 1.0, 20),
        *_run("spark", "s2", "spark_etl", w2, 9.0, 21),
        *_run("duckdb", "d2", "duckdb_etl", w2, 2.0, 21),
    ]
    assert compare(measurements).window == w2  # the latest
    assert compare(measurements, w1).ratio() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="complete windows"):
        compare(measurements, "[2024-03-01, 2024-03-02)")


def test_without_a_window_every_engine_completed_it_says_what_to_run():
    window = "[2024-01-01, 2024-01-02)"
    two = [*_run("polars", "p1", "polars_etl", window, 1.0, 1),
           *_run("spark", "s1", "spark_etl", window, 1.0, 1)]  # fmt: skip
    with pytest.raises(ValueError, match=r"run compare_engines .*duckdb_etl"):
        compare(two)
    assert ENGINES == ("polars", "spark", "duckdb")


def test_the_chart_is_a_png(tmp_path):
    window = "[2024-01-01, 2024-01-02)"
    comparison = compare([*_run("polars", "p", "polars_etl", window, 1.0, 1),
                          *_run("spark", "s", "spark_etl", window, 4.0, 2, session=2.0),
                          *_run("duckdb", "d", "duckdb_etl", window, 2.0, 2)])  # fmt: skip
    layers_png(comparison, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")
