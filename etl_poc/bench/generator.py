"""Benchmark of the generator: fresh processes, repeated, medians with min and max.

Each run is `etl-poc generate` in a new Python process into a scratch directory, sampled
with measure.usage.TreeSampler (worker processes included), so imports and start-up are in
the figure, as a user would see them.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from etl_poc.generate.config import SIZES
from etl_poc.measure.usage import host_facts, run_measured
from etl_poc.report.stats import spread
from etl_poc.report.units import gib


def run_generator_benchmark(
    size: str,
    repeat: int,
    formats: str,
    reports_dir: Path,
    scratch: Path | None = None,
    events: int | None = None,
) -> dict:
    """Run the generator `repeat` times; `events` replaces the size's count (for a quick run)."""
    events = events or SIZES[size]
    runs = []
    for attempt in range(repeat):
        out_dir = Path(tempfile.mkdtemp(prefix=f"bench-{size}-", dir=scratch))
        try:
            command = [
                sys.executable, "-m", "etl_poc.cli", "generate", "--events", str(events),
                "--label", size, "--formats", formats, "--out", str(out_dir), "--no-progress",
            ]  # fmt: skip
            usage = run_measured(command, interval=0.05)
            if usage["exit_code"] != 0:
                raise RuntimeError(
                    f"generator run {attempt + 1} failed with exit code {usage['exit_code']}"
                )
            written = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        wall = usage["wall_seconds"]
        runs.append({**usage, "events_per_second": events / wall, "bytes_written": written})
        print(
            f"run {attempt + 1}/{repeat}: {wall:.2f} s, {events / wall / 1e6:.2f} M events/s, "
            f"peak RSS {gib(usage['peak_rss_bytes'])} GiB, CPU {usage['cpu_utilisation']:.2f} cores"
        )
    result = {
        "benchmark": "generator",
        "size": size,
        "events": events,
        "formats": formats.split(","),
        "repeat": repeat,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_facts(),
        "command": f"etl-poc bench generator --size {size} --repeat {repeat} --formats {formats}",
        "wall_seconds": spread([r["wall_seconds"] for r in runs]),
        "events_per_second": spread([r["events_per_second"] for r in runs]),
        "peak_rss_bytes": spread([r["peak_rss_bytes"] for r in runs]),
        "runs": runs,
    }
    reports_dir.mkdir(parents=True, exist_ok=True)
    name = f"generator-benchmark-{size}-{'-'.join(result['formats'])}.json"
    (reports_dir / name).write_text(json.dumps(result, indent=2) + "\n")
    return result
