"""The dbt project (etl_poc/warehouse/dbt): where it is, the variables every invocation gets
(the engine whose events to read, the days to rebuild, and logic/spec.py's commerce rules, so
they are stated once), and running dbt on a warehouse file outside Dagster (the command line,
`make docs`, the tests, the benchmark). Dagster's assets run it through dagster-dbt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from etl_poc.logic import spec

PROJECT_DIR = Path(__file__).with_name("dbt")
TARGET_DIR = PROJECT_DIR / "target"
MANIFEST = TARGET_DIR / "manifest.json"
MARTS = (
    "mart_user_sessions",
    "mart_daily_business_metrics",
    "mart_customer_tier_analytics",
    "mart_product_performance",
    "mart_customer_analytics",
)


def dbt_executable() -> str:
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


def variables(engine: str = spec.ENGINES[0], days: list[date] | None = None) -> dict:
    """`days`: the days the daily models rebuild (None: every day; [] none)."""
    return {
        "engine": engine,
        "days": "all" if days is None else [d.isoformat() for d in days],
        "tax_rate_percent": spec.TAX_RATE_PERCENT,
        "max_discount_percent": dict(spec.MAX_DISCOUNT_PERCENT),
        "user_tiers": list(spec.USER_TIERS),
        "event_types": list(spec.EVENT_TYPES),
    }


def work_dir(database: Path) -> Path:
    """dbt's files for a warehouse file (its profile, target and logs), beside it."""
    return Path(database).resolve().parent / f"{Path(database).stem}-dbt"


def profiles_dir(database: Path) -> Path:
    """A profiles.yml naming the warehouse file (dbt's profile is the project's own, with
    the path filled in), so nothing depends on the environment."""
    folder = work_dir(database)
    folder.mkdir(parents=True, exist_ok=True)
    profile = (
        (PROJECT_DIR / "profiles.yml")
        .read_text()
        .replace("{{ env_var('ETL_POC_DBT_DATABASE') }}", str(Path(database).resolve()))
    )
    (folder / "profiles.yml").write_text(profile)
    return folder


def environment(database: Path, target_dir: Path | None = None) -> dict[str, str]:
    """dbt's environment: the warehouse file's profile; its logs and (unless given) its
    target beside the warehouse file, not in the source tree."""
    out = work_dir(database)
    return {
        **os.environ,
        "DBT_PROFILES_DIR": str(profiles_dir(database)),
        "DBT_PROJECT_DIR": str(PROJECT_DIR),
        "DBT_TARGET_PATH": str(target_dir or out / "target"),
        "DBT_LOG_PATH": str(out / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def _sources_newer_than(path: Path) -> bool:
    if not path.exists():
        return True
    built = path.stat().st_mtime
    return any(p.stat().st_mtime > built for p in PROJECT_DIR.rglob("*")
               if p.is_file() and TARGET_DIR not in p.parents)  # fmt: skip


def manifest() -> Path:
    """The project's manifest, parsed again when any project file is newer (dagster-dbt reads
    it when the code location loads)."""
    if _sources_newer_than(MANIFEST):
        env = environment(TARGET_DIR / "parse.duckdb", TARGET_DIR)
        result = subprocess.run([dbt_executable(), "parse", "--quiet"], env=env,
                                capture_output=True, text=True, cwd=PROJECT_DIR)  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"dbt parse failed: {(result.stdout + result.stderr)[-3000:]}")
    return MANIFEST


@dataclass(frozen=True)
class DbtRun:
    command: list[str]
    seconds: float
    results: list[dict]  # run_results.json's: unique_id, status, execution_time, failures

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.results if r["status"] not in ("success", "pass", "warn")]

    def model_seconds(self) -> dict[str, float]:
        return {r["unique_id"].split(".")[-1]: r["execution_time"] for r in self.results
                if r["unique_id"].startswith("model.")}  # fmt: skip


def run(database: Path, args: list[str], engine: str = spec.ENGINES[0],
        days: list[date] | None = None) -> DbtRun:  # fmt: skip
    """`dbt <args>` on the warehouse file, with the project's variables; raises with dbt's
    output when it fails."""
    env = environment(database)
    command = [dbt_executable(), *args, "--vars", json.dumps(variables(engine, days))]
    results_file = Path(env["DBT_TARGET_PATH"]) / "run_results.json"
    results_file.unlink(missing_ok=True)
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=PROJECT_DIR)
    seconds = time.perf_counter() - started
    results = json.loads(results_file.read_text())["results"] if results_file.exists() else []
    run = DbtRun(command[:2], seconds, results)
    if result.returncode != 0:
        failed = ", ".join(r["unique_id"] for r in run.failed) or "no result"
        raise RuntimeError(f"dbt {args[0]} failed ({failed}): {result.stdout[-3000:]}")
    return run
