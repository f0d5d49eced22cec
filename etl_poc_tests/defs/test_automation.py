"""The landing sensor requests exactly the days new, changed or removed files hold (and the
days built on them since); the daily schedule runs the day that just ended."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, date, datetime

import dagster as dg
import pytest

from etl_poc import settings as settings_module
from etl_poc.cli import main as cli
from etl_poc.defs.assets import asset_key
from etl_poc.defs.automation import (
    DAILY_SCHEDULE,
    landing_files_changed,
    landing_state,
    touched_days,
    window_to_request,
)
from etl_poc.defs.resources import DataDirectory
from etl_poc.defs.tags import RANGE_END_TAG, RANGE_START_TAG
from etl_poc.logic.spec import ENGINES

D = date.fromisoformat


def test_touched_days_are_those_of_every_changed_version():
    before = {
        "a.parquet": {"version": [1], "days": ["2024-01-01", "2024-01-03"]},
        "b.csv": {"version": [1], "days": ["2024-01-05", "2024-01-05"]},
        "gone.csv": {"version": [1], "days": ["2024-01-09", "2024-01-09"]},
        "bad.csv": {"version": [1], "days": None},  # quarantined
    }
    after = {
        "a.parquet": {"version": [1], "days": ["2024-01-01", "2024-01-03"]},  # unchanged
        "b.csv": {"version": [2], "days": ["2024-01-06", "2024-01-06"]},  # rewritten
        "bad.csv": {"version": [2], "days": ["2024-01-07", "2024-01-07"]},  # corrected
        "new.csv": {"version": [1], "days": ["2024-01-08", "2024-01-08"]},
    }
    assert touched_days(before, after) == {D(f"2024-01-0{d}") for d in (5, 6, 7, 8, 9)}
    assert touched_days(after, after) == set()


def test_the_window_runs_on_to_the_last_day_built_on_the_touched_ones():
    first, last = D("2024-01-01"), D("2024-01-31")
    touched = {D("2024-01-05"), D("2024-01-06")}
    assert window_to_request(touched, set(), first, last) == (D("2024-01-05"), D("2024-01-06"))
    built = {D("2024-01-02"), D("2024-01-10")}  # sessions of the 10th continue from the 6th
    assert window_to_request(touched, built, first, last) == (D("2024-01-05"), D("2024-01-10"))
    assert window_to_request({D("2023-12-31"), D("2024-02-01")}, set(), first, last) is None


@pytest.fixture
def lookback(monkeypatch):
    def set_days(days: int):
        monkeypatch.setenv("ETL_POC_SENSOR_LOOKBACK_DAYS", str(days))
        settings_module.settings.cache_clear()

    yield set_days
    settings_module.settings.cache_clear()


def _tick(instance, data, cursor):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"data_dir": DataDirectory(path=str(data))}
    )
    result = landing_files_changed(context)
    windows = [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in result.run_requests]
    return windows, result.cursor


def test_the_sensor_requests_the_days_of_new_changed_and_removed_files(tmp_path, lookback):
    landing = tmp_path / "landing"
    cli(["generate", "--events", "3000", "--formats", "parquet", "--days", "2",
         "--incremental-days", "2", "--out", str(landing), "--no-progress"])  # fmt: skip
    instance = dg.DagsterInstance.ephemeral()
    # First tick: nothing older than the lookback (the data is from 2024: nothing at all).
    lookback(3)
    assert _tick(instance, tmp_path, None)[0] == []
    # With a lookback that reaches the data: every day not yet built by every engine.
    lookback(100_000)
    days = {
        name: entry["days"]
        for name, entry in landing_state(DataDirectory(path=str(tmp_path))).items()
    }
    name = "incremental/incremental_2024-01-03_3000ev.parquet"
    last = max(d[1] for d in days.values())  # the last sessions may run past midnight
    windows, cursor = _tick(instance, tmp_path, None)
    assert windows == [("2024-01-01", last)]
    assert _tick(instance, tmp_path, cursor)[0] == []  # nothing changed since
    # A rewritten incremental file: its days only, nothing is built after them.
    day_file = landing / name
    shutil.copy(day_file, tmp_path / "copy.parquet")
    os.replace(tmp_path / "copy.parquet", day_file)
    windows, cursor = _tick(instance, tmp_path, cursor)
    assert windows == [tuple(days[name])] == [("2024-01-03", days[name][1])]
    # Once every day is built, a change to the bulk file redoes every day after it.
    for engine in ENGINES:
        for day in ("2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", last):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key(engine, "events"), partition=day)
            )
    bulk = next((landing / "bulk").glob("*.parquet"))
    os.utime(bulk, ns=(bulk.stat().st_atime_ns, bulk.stat().st_mtime_ns + 10**9))
    windows, cursor = _tick(instance, tmp_path, cursor)
    assert windows == [("2024-01-01", last)]
    # A removed file: the days it held, and those built on them since.
    day_file.unlink()
    windows, cursor = _tick(instance, tmp_path, cursor)
    assert windows == [("2024-01-03", last)]
    assert name not in json.loads(cursor)
    # The first tick of a sensor turned on over a built lakehouse requests nothing.
    assert _tick(instance, tmp_path, None)[0] == []


def test_the_daily_schedule_runs_the_day_that_just_ended():
    from etl_poc.definitions import defs

    schedule = defs.resolve_schedule_def(DAILY_SCHEDULE)
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2024, 1, 20, 1, 0, tzinfo=UTC)
    )
    (request,) = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2024-01-19"
    assert schedule.cron_schedule == "0 1 * * *"
    assert schedule.job_name == "compare_engines"
