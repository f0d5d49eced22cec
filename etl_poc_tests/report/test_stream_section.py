"""The report's speed-layer section, from a bench-stream result."""

from __future__ import annotations

import json

from etl_poc.report.report import stream_section


def _engine(throughput: int, p95: float) -> dict:
    return {
        "backlog": {"throughput_per_second": throughput, "peak_rss_gib": 0.8},
        "rate": {"latency_ms": {"p50": 300.0, "p95": p95, "p99": 2 * p95}, "rate_achieved": 1000,
                 "max_consumer_lag": 1200, "peak_rss_gib": 1.1},
        "live": {"funnel": {"p50_ms": 2.0, "p95_ms": 3.5}, "top_products": {"p50_ms": 4.0, "p95_ms": 9.25}},
    }  # fmt: skip


def test_each_engine_gets_a_row_with_its_figures(tmp_path):
    engines = {"polars": _engine(26000, 900.0), "spark": _engine(2000, 12000.0)}
    result = {
        "producer": {"rate_median_per_second": 74000},
        "backlog": {e: v["backlog"] for e, v in engines.items()},
        "rate": {e: v["rate"] for e, v in engines.items()},
        "live_queries": {e: v["live"] for e, v in engines.items()},
    }
    (tmp_path / "stream-small.json").write_text(json.dumps(result))
    lines = stream_section(tmp_path)
    rows = [line for line in lines if line.startswith("| stream-small.json")]
    assert len(rows) == 2
    assert (
        "| polars | 26,000 | 300 / 900 / 1,800 (1,000) | 1,200 | 1.1 | top_products 9.2 ms |"
        in rows[0]
    )
    assert "| spark | 2,000 | 300 / 12,000 / 24,000 (1,000) |" in rows[1]
    assert stream_section(tmp_path / "nothing-here") == []
