"""Benchmark of the two engines on the same landing files: each run is the whole chain
(lakehouse.batch) in a fresh process, sampled with measure.usage.TreeSampler so that the
Spark JVM's memory is counted, repeated and alternated between engines."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from etl_poc.measure.usage import TreeSampler, host_facts
from etl_poc.report.stats import spread


def run_engine_benchmark(
    landing: Path, label: str, repeat: int, reports_dir: Path, engines=("polars", "spark")
) -> dict:
    runs: list[dict] = []
    for attempt in range(repeat):
        for engine in engines if attempt % 2 == 0 else tuple(reversed(engines)):
            out = Path(tempfile.mkdtemp(prefix=f"bench-{engine}-"))
            try:
                command = [
                    sys.executable, "-m", "etl_poc.lakehouse.batch", "--engine", engine,
                    "--landing", str(landing), "--out", str(out),
                ]  # fmt: skip
                process = subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                with TreeSampler(process.pid, interval=0.1) as sampler:
                    code = process.wait()
                if code != 0:
                    raise RuntimeError(f"{engine} run failed with exit code {code}")
                timings = json.loads((out / "timings.json").read_text())
            finally:
                shutil.rmtree(out, ignore_errors=True)
            run = {**timings, **sampler.usage.as_dict(), "attempt": attempt + 1}
            runs.append(run)
            print(
                f"{engine} run {attempt + 1}: {run['wall_seconds']:.1f} s wall "
                f"(start-up {run['startup_seconds']:.1f} s), peak RSS "
                f"{run['peak_rss_bytes'] / 2**30:.2f} GiB, CPU {run['cpu_utilisation']:.2f} cores, "
                f"{run['rows']:,} rows"
            )
    summary = {}
    for engine in engines:
        mine = [r for r in runs if r["engine"] == engine]
        summary[engine] = {
            key: spread(r[key] for r in mine)
            for key in ("wall_seconds", "startup_seconds", "peak_rss_bytes", "cpu_seconds")
        }
    result = {
        "benchmark": "engines",
        "label": label,
        "landing": str(landing),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_facts(),
        "summary": summary,
        "runs": runs,
    }
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / f"engine-benchmark-{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
