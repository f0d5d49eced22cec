"""`make report` from fixture measurements: tables with their sources, fitted growth, cost,
the flowchart, a chart; a clear error without measurements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl_poc.report.report import build_report, fitted_exponent


def _stats(median, spread=0.1):
    return {"median": median, "min": median * (1 - spread), "max": median * (1 + spread)}


def _benchmark(reports: Path, size: str, events: int, polars: float, spark: float, rss: float,
               label: str | None = None, master: str = "local[*]"):  # fmt: skip
    figures = {
        "dagster/polars": {"wall_seconds": _stats(polars), "peak_rss_bytes": _stats(rss),
                           "cpu_utilisation": _stats(1.7), "cpu_seconds": _stats(polars),
                           "runs": 3},
        "dagster/spark": {"wall_seconds": _stats(spark), "peak_rss_bytes": _stats(2 * rss),
                          "cpu_utilisation": _stats(1.8), "cpu_seconds": _stats(spark),
                          "runs": 3},
    }  # fmt: skip
    content = {
        "benchmark": "pipeline", "size": size, "label": label or size, "spark_master": master,
        "measured_at": "2026-11-29T16:35:09+00:00",
        "host": {"cores": 2, "memory_bytes": 24 * 2**30},
        "summary": {"by_run_kind": figures, "derived": {}},
        "graph": {"layers": {"raw": {"polars": {"rows_in": _stats(events, 0)}}}},
    }  # fmt: skip
    (reports / f"benchmark-{label or size}.json").write_text(json.dumps(content))


def test_the_report_is_built_from_the_measured_files(tmp_path: Path):
    _benchmark(tmp_path, "small", 100_000, 2.0, 40.0, 0.5 * 2**30)
    _benchmark(tmp_path, "medium", 10_000_000, 70.0, 315.0, 10.8 * 2**30)
    (tmp_path / "benchmark-generator.json").write_text(json.dumps({"benchmark": "generator"}))
    # A run on a cluster: its own section, and out of the growth fit.
    _benchmark(tmp_path, "medium", 10_000_000, 70.0, 200.0, 10.8 * 2**30, "medium-2w",
               "spark://127.0.0.1:7077")  # fmt: skip
    report = build_report(tmp_path).read_text()
    assert "benchmark-medium.json" in report
    assert "| medium, 10,000,000 events" in report
    assert "70.0 [63.0-77.0]" in report
    # Time grows like events ** (log 35 / log 100) for Polars.
    assert "events^0.77" in report
    assert "```mermaid" in report
    assert "Spark 4.5x slower at medium" in report
    # 10.8 GiB x 1.25 needs a 16 GiB node; 21.6 GiB x 1.25 a 32 GiB one.
    assert "| medium | polars | r6i.large (16 GiB" in report
    assert "| medium | spark | r6i.xlarge (32 GiB" in report
    assert "AWS EC2 on-demand" in report
    assert (tmp_path / "report-scaling.png").read_bytes().startswith(b"\x89PNG")
    assert "| medium-2w (benchmark-medium-2w.json) | spark://127.0.0.1:7077 | 200.0 | 315.0 |" in (
        report
    )


def test_without_measurements_it_says_what_to_run(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="make bench"):
        build_report(tmp_path)


def test_the_fitted_exponent():
    assert fitted_exponent([(10, 100), (100, 1000), (1000, 10000)]) == pytest.approx(1.0)
    assert fitted_exponent([(10, 5), (1000, 5)]) == pytest.approx(0.0)
    assert fitted_exponent([(10, 5)]) is None
