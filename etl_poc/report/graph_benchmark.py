"""The engines compared from the asset graph's own measurements: what every layer's
materialization recorded (defs/metadata.py), aggregated per layer and in total.

Input: one Measurement per (run, engine, layer), as the `benchmark` asset reads them from the
Dagster instance. The comparison uses one window, the latest that every layer of both engines
was materialized for, and takes medians over the runs of that window (min and max shown), so
that a figure is never a single lucky or unlucky run and never mixes windows. Runs of one
engine alone (`polars_etl`, `spark_etl`) are preferred to runs of both in one process
(`compare_engines`), where the Python process also holds the other engine's leftovers.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from etl_poc.logic.spec import ENGINES
from etl_poc.logic.spec import LAYER_NAMES as LAYERS
from etl_poc.measure.layer_io import LAYER_FIGURES
from etl_poc.report.stats import spread
from etl_poc.report.units import gib

SINGLE_ENGINE_JOBS = {
    "polars": ("polars_etl", "bench_polars"),
    "spark": ("spark_etl", "bench_spark"),
}


@dataclass(frozen=True)
class Measurement:
    engine: str
    layer: str
    run_id: str
    job: str
    window: str
    timestamp: float  # when it was recorded (seconds since the epoch)
    figures: dict[str, float]
    spark_session_seconds: float | None = None


@dataclass
class Comparison:
    window: str
    runs: dict[str, int]  # engine -> runs the medians are over
    sources: dict[str, str]  # engine -> which job's runs
    layers: dict[str, dict[str, dict[str, dict[str, float]]]]  # layer -> engine -> figure -> stat
    totals: dict[str, dict[str, float]] = field(default_factory=dict)  # engine -> figure

    def ratio(self, layer: str | None = None) -> float | None:
        """Spark's median time over Polars' (a layer's, or the whole chain's)."""
        if layer is None:
            polars, spark = self.totals["polars"]["seconds"], self.totals["spark"]["seconds"]
        else:
            polars = self.layers[layer]["polars"]["seconds"]["median"]
            spark = self.layers[layer]["spark"]["seconds"]["median"]
        return spark / polars if polars else None

    def as_dict(self) -> dict:
        return {
            "window": self.window,
            "runs": self.runs,
            "sources": self.sources,
            "layers": self.layers,
            "totals": self.totals,
            "spark_over_polars": {
                **{layer: self.ratio(layer) for layer in self.layers},
                "total": self.ratio(),
            },
        }


def compare(measurements: list[Measurement], window: str | None = None) -> Comparison:
    """The comparison on `window` (as the metadata writes it, e.g. "[2024-01-01,
    2024-01-31)"), by default the latest window every layer of both engines has; ValueError
    when there is none."""
    windows: dict[str, float] = {}
    for candidate in {m.window for m in measurements}:
        here = [m for m in measurements if m.window == candidate]
        covered = {(m.engine, m.layer) for m in here}
        if all((e, layer) in covered for e in ENGINES for layer in LAYERS):
            windows[candidate] = max(m.timestamp for m in here)
    if not windows:
        raise ValueError(
            "no partition window has been materialized by every layer of both engines: "
            "run compare_engines (or polars_etl and spark_etl) over the same window first"
        )
    if window is None:
        window = max(windows, key=windows.get)
    elif window not in windows:
        raise ValueError(
            f"window {window} has not been materialized by every layer of both engines; "
            f"complete windows: {', '.join(sorted(windows))}"
        )
    chosen = [m for m in measurements if m.window == window]
    layers: dict = {layer: {} for layer in LAYERS}
    runs, sources, totals = {}, {}, {}
    for engine in ENGINES:
        mine = [m for m in chosen if m.engine == engine]
        alone = [m for m in mine if m.job in SINGLE_ENGINE_JOBS[engine]]
        # Only runs that measured every layer, so that a total is one run's chain.
        complete = _complete_runs(alone) or _complete_runs(mine) or mine
        sources[engine] = ", ".join(sorted({m.job for m in complete}))
        runs[engine] = len({m.run_id for m in complete})
        for layer in LAYERS:
            at_layer = [m for m in complete if m.layer == layer]
            layers[layer][engine] = {
                name: spread(m.figures[name] for m in at_layer) for name in LAYER_FIGURES
            }
        per_run: dict[str, float] = {}
        for m in complete:
            per_run[m.run_id] = per_run.get(m.run_id, 0.0) + m.figures["seconds"]
        sessions = [m.spark_session_seconds for m in complete if m.spark_session_seconds]
        totals[engine] = {
            "seconds": statistics.median(per_run.values()),
            "seconds_min": min(per_run.values()),
            "seconds_max": max(per_run.values()),
            "startup_seconds": statistics.median(
                _per_run_sum(complete, "startup_seconds").values()
            ),
            "spark_session_seconds": statistics.median(sessions) if sessions else 0.0,
            "peak_rss_bytes": max(
                layers[layer][engine]["peak_rss_bytes"]["median"] for layer in LAYERS
            ),
            "cpu_seconds": statistics.median(_per_run_sum(complete, "cpu_seconds").values()),
            "rows_out": layers["events"][engine]["rows_out"]["median"],
        }
    return Comparison(window, runs, sources, layers, totals)


def _complete_runs(measurements: list[Measurement]) -> list[Measurement]:
    layers_by_run: dict[str, set] = {}
    for m in measurements:
        layers_by_run.setdefault(m.run_id, set()).add(m.layer)
    complete = {run for run, layers in layers_by_run.items() if set(LAYERS) <= layers}
    return [m for m in measurements if m.run_id in complete]


def _per_run_sum(measurements: list[Measurement], name: str) -> dict[str, float]:
    sums: dict[str, float] = {}
    for m in measurements:
        sums[m.run_id] = sums.get(m.run_id, 0.0) + m.figures[name]
    return sums


def markdown(comparison: Comparison, chart: str | None = None) -> str:
    """The comparison as markdown: a table per layer and the totals."""
    c = comparison
    lines = [
        f"Window {c.window}; medians over {c.runs['polars']} Polars run(s) "
        f"({c.sources['polars']}) and {c.runs['spark']} Spark run(s) ({c.sources['spark']}), "
        "min-max in brackets.",
        "",
        "| layer | Polars s | Spark s | Spark/Polars | Polars peak GiB | Spark peak GiB "
        "| Polars cores | Spark cores | rows out |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for layer in LAYERS:
        p, s = c.layers[layer]["polars"], c.layers[layer]["spark"]
        ratio = c.ratio(layer)
        lines.append(
            f"| {layer} | {_range(p['seconds'])} | {_range(s['seconds'])} | "
            f"{'-' if ratio is None else f'{ratio:.1f}x'} | "
            f"{gib(p['peak_rss_bytes']['median'])} | {gib(s['peak_rss_bytes']['median'])} | "
            f"{p['cpu_utilisation']['median']:.2f} | {s['cpu_utilisation']['median']:.2f} | "
            f"{int(p['rows_out']['median']):,} |"
        )
    tp, ts = c.totals["polars"], c.totals["spark"]
    ratio = c.ratio()
    lines += [
        f"| **total** | **{tp['seconds']:.1f}** [{tp['seconds_min']:.1f}-{tp['seconds_max']:.1f}] "
        f"| **{ts['seconds']:.1f}** [{ts['seconds_min']:.1f}-{ts['seconds_max']:.1f}] | "
        f"**{'-' if ratio is None else f'{ratio:.1f}x'}** | {gib(tp['peak_rss_bytes'])} | "
        f"{gib(ts['peak_rss_bytes'])} | | | {int(tp['rows_out']):,} |",
        "",
        f"Start-up inside those times: Polars {tp['startup_seconds']:.2f} s (engine import and "
        f"IP table, all steps), Spark {ts['startup_seconds']:.2f} s, of which the session "
        f"{ts['spark_session_seconds']:.2f} s (once per run). Peak memory is of the process "
        "tree (Spark: the JVM included; Polars: without a JVM of the same run).",
    ]
    if chart:
        lines += ["", f"![seconds and peak memory per layer]({chart})"]
    return "\n".join(lines)


def _range(stats: dict[str, float]) -> str:
    if stats["min"] == stats["max"]:
        return f"{stats['median']:.2f}"
    return f"{stats['median']:.2f} [{stats['min']:.2f}-{stats['max']:.2f}]"
