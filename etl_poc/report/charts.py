"""Every chart of the reports, as PNG files (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

from etl_poc.logic.spec import LAYER_NAMES
from etl_poc.report.units import GIB


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def layers_png(comparison, path: Path) -> None:
    """Seconds and peak memory per layer, the engines side by side, as a PNG."""
    plt = _pyplot()
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4))
    engines = list(comparison.totals)
    width = 0.8 / len(engines)
    x = range(len(LAYER_NAMES))
    for index, engine in enumerate(engines):
        offset = (index - (len(engines) - 1) / 2) * width
        layers = comparison.layers
        seconds = [layers[layer][engine]["seconds"]["median"] for layer in LAYER_NAMES]
        memory = [layers[layer][engine]["peak_rss_bytes"]["median"] / GIB for layer in LAYER_NAMES]
        time_axis.bar([i + offset for i in x], seconds, width, label=engine)
        memory_axis.bar([i + offset for i in x], memory, width, label=engine)
    for axis, title in ((time_axis, "seconds (median)"), (memory_axis, "peak RSS, GiB")):
        axis.set_xticks(list(x), LAYER_NAMES)
        axis.set_title(title)
        axis.legend()
    figure.suptitle(f"{' vs '.join(engines)} per layer, window {comparison.window}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def runs_png(summary: dict, path: Path) -> None:
    """Wall time and peak memory per run kind of a benchmark file (median, min-max)."""
    plt = _pyplot()
    rows = sorted(summary["by_run_kind"].items())
    names = [name for name, _ in rows]
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for axis, key, scale, title in (
        (time_axis, "wall_seconds", 1, "wall seconds (median, min-max)"),
        (memory_axis, "peak_rss_bytes", GIB, "peak RSS GiB (median, min-max)"),
    ):
        medians = [f[key]["median"] / scale for _, f in rows]
        low = [m - f[key]["min"] / scale for m, (_, f) in zip(medians, rows, strict=True)]
        high = [f[key]["max"] / scale - m for m, (_, f) in zip(medians, rows, strict=True)]
        axis.bar(names, medians, yerr=[low, high], capsize=4)
        axis.set_title(title)
        axis.tick_params(axis="x", rotation=20)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def scaling_png(growth: dict, path: Path) -> bool:
    """Wall time and peak memory against events, log-log, per engine; False without data."""
    if not any(wall for _, _, wall, _ in growth.values()):
        return False
    plt = _pyplot()
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for engine, (_, _, wall, rss) in growth.items():
        if wall:
            time_axis.plot(*zip(*wall, strict=True), marker="o", label=engine)
        if rss:
            xs, ys = zip(*rss, strict=True)
            memory_axis.plot(xs, [y / GIB for y in ys], marker="o", label=engine)
    for axis, title in ((time_axis, "wall seconds"), (memory_axis, "peak RSS, GiB")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("events")
        axis.set_title(title)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
