"""Benchmark of the engines on the same landing files: each run is an engine's whole logic
pipeline() in a fresh process (bench/plain.py --chain), sampled from outside
(measure.run_measured) so that the Spark JVM's memory is counted, repeated and alternated
between engines."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from etl_poc.logic.spec import ENGINES
from etl_poc.measure.usage import host_facts, run_measured
from etl_poc.report.stats import spread
from etl_poc.report.units import gib


def run_engine_benchmark(
    data: Path, label: str, repeat: int, reports_dir: Path, engines=ENGINES
) -> dict:
    """Each engine's chain over the landing zone of the data directory `data`, `repeat`
    times; results in <reports_dir>/engine-benchmark-<label>.json."""
    runs: list[dict] = []
    for attempt in range(repeat):
        for engine in engines if attempt % 2 == 0 else tuple(reversed(engines)):
            out = Path(tempfile.mkdtemp(prefix=f"bench-{engine}-"))
            try:
                command = [
                    sys.executable, "-m", "etl_poc.bench.plain", "--engine", engine, "--chain",
                    "--data", str(data), "--out", str(out),
                ]  # fmt: skip
                usage = run_measured(command)
                if usage["exit_code"] != 0:
                    raise RuntimeError(f"{engine} run failed with exit code {usage['exit_code']}")
                timings = json.loads((out / "result.json").read_text())
            finally:
                shutil.rmtree(out, ignore_errors=True)
            run = {**timings, **usage, "attempt": attempt + 1}
            runs.append(run)
            print(
                f"{engine} run {attempt + 1}: {run['wall_seconds']:.1f} s wall "
                f"(in the process {run['seconds']:.1f} s), peak RSS "
                f"{gib(run['peak_rss_bytes'])} GiB, CPU {run['cpu_utilisation']:.2f} cores, "
                f"{run['rows']:,} rows"
            )
    summary = {}
    for engine in engines:
        mine = [r for r in runs if r["engine"] == engine]
        summary[engine] = {
            key: spread(r[key] for r in mine)
            for key in ("wall_seconds", "seconds", "peak_rss_bytes", "cpu_seconds")
        }
    result = {
        "benchmark": "engines",
        "label": label,
        "data": str(data),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_facts(),
        "summary": summary,
        "runs": runs,
    }
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / f"engine-benchmark-{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
