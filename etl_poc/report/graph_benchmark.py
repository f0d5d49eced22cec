"""The engines compared from the asset graph's own measurements: what every layer's
materialization recorded (defs/metadata.py), aggregated per layer and in total.

Input: one Measurement per (run, engine, layer), as the `benchmark` asset reads them from the
Dagster instance. The comparison uses one window, the latest that every layer of every engine
was materialized for (every engine of `spec.ENGINES`), and takes medians over the runs of that window (min and max shown), so
that a figure is never a single lucky or unlucky run and never mixes windows. Runs of one
engine alone (`polars_etl`, `spark_etl`, `duckdb_etl`) are preferred to runs of all in one
process (`compare_engines`), where the Python process also holds the other engines' leftovers.
Each engine is compared with Polars, the first engine.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from etl_poc.logic.spec import ENGINES
from etl_poc.logic.spec import LAYER_NAMES as LAYERS
from etl_poc.measure.layer_io import LAYER_FIGURES
from etl_poc.report.stats import spread
from etl_poc.report.units import gib

SINGLE_ENGINE_JOBS = {engine: (f"{engine}_etl", f"bench_{engine}") for engine in ENGINES}
TITLES = {"polars": "Polars", "spark": "Spark", "duckdb": "DuckDB"}
BASE = ENGINES[0]  # what every other engine is compared with


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

    def ratio(self, layer: str | None = None, engine: str = "spark") -> float | None:
        """The engine's median time over Polars' (a layer's, or the whole chain's)."""
        if layer is None:
            base, other = self.totals[BASE]["seconds"], self.totals[engine]["seconds"]
        else:
            base = self.layers[layer][BASE]["seconds"]["median"]
            other = self.layers[layer][engine]["seconds"]["median"]
        return other / base if base else None

    def as_dict(self) -> dict:
        return {
            "window": self.window,
            "runs": self.runs,
            "sources": self.sources,
            "layers": self.layers,
            "totals": self.totals,
            **{
                f"{engine}_over_{BASE}": {
                    **{layer: self.ratio(layer, engine) for layer in self.layers},
                    "total": self.ratio(None, engine),
                }
                for engine in ENGINES[1:]
            },
        }


def compare(measurements: list[Measurement], window: str | None = None) -> Comparison:
    """The comparison on `window` (as the metadata writes it, e.g. "[2024-01-01,
    2024-01-31)"), by default the latest window every layer of every engine has; ValueError
    when there is none."""
    windows: dict[str, float] = {}
    for candidate in {m.window for m in measurements}:
        here = [m for m in measurements if m.window == candidate]
        covered = {(m.engine, m.layer) for m in here}
        if all((e, layer) in covered for e in ENGINES for layer in LAYERS):
            windows[candidate] = max(m.timestamp for m in here)
    if not windows:
        raise ValueError(
            "no partition window has been materialized by every layer of every engine: run "
            f"compare_engines (or {', '.join(f'{e}_etl' for e in ENGINES)}) over the same "
            "window first"
        )
    if window is None:
        window = max(windows, key=windows.get)
    elif window not in windows:
        raise ValueError(
            f"window {window} has not been materialized by every layer of every engine; "
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
    """The comparison as markdown: a table per layer and the totals, every engine side by
    side and each over Polars."""
    c, others = comparison, ENGINES[1:]
    title = TITLES.get
    sources = ", ".join(f"{c.runs[e]} {title(e, e)} run(s) ({c.sources[e]})" for e in ENGINES)
    header = (
        [f"{title(e, e)} s" for e in ENGINES]
        + [f"{title(e, e)}/{title(BASE)}" for e in others]
        + [f"{title(e, e)} peak GiB" for e in ENGINES]
        + [f"{title(e, e)} cores" for e in ENGINES]
    )
    lines = [
        f"Window {c.window}; medians over {sources}, min-max in brackets.",
        "",
        "| layer | " + " | ".join(header) + " | rows out |",
        "|---|" + "---:|" * (len(header) + 1),
    ]
    for layer in LAYERS:
        at = c.layers[layer]
        cells = (
            [_range(at[e]["seconds"]) for e in ENGINES]
            + [_times(c.ratio(layer, e)) for e in others]
            + [gib(at[e]["peak_rss_bytes"]["median"]) for e in ENGINES]
            + [f"{at[e]['cpu_utilisation']['median']:.2f}" for e in ENGINES]
        )
        rows = int(at[BASE]["rows_out"]["median"])
        lines.append(f"| {layer} | " + " | ".join(cells) + f" | {rows:,} |")
    t = c.totals
    cells = (
        [f"**{t[e]['seconds']:.1f}** [{t[e]['seconds_min']:.1f}-{t[e]['seconds_max']:.1f}]"
         for e in ENGINES]
        + [f"**{_times(c.ratio(None, e))}**" for e in others]
        + [gib(t[e]["peak_rss_bytes"]) for e in ENGINES]
        + ["" for _ in ENGINES]
    )  # fmt: skip
    lines.append("| **total** | " + " | ".join(cells) + f" | {int(t[BASE]['rows_out']):,} |")
    startup = ", ".join(
        f"{title(e, e)} {t[e]['startup_seconds']:.2f} s"
        + (f" (of which the session {t[e]['spark_session_seconds']:.2f} s, once per run)"
           if t[e]["spark_session_seconds"] else "")
        for e in ENGINES
    )  # fmt: skip
    lines += [
        "",
        f"Start-up inside those times (engine import, IP table, session; all steps): {startup}. "
        "Peak memory is of the process tree (Spark: the JVM included; the others: without a "
        "JVM of the same run).",
    ]
    if chart:
        lines += ["", f"![seconds and peak memory per layer]({chart})"]
    return "\n".join(lines)


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1f}x"


def _range(stats: dict[str, float]) -> str:
    if stats["min"] == stats["max"]:
        return f"{stats['median']:.2f}"
    return f"{stats['median']:.2f} [{stats['min']:.2f}-{stats['max']:.2f}]"
