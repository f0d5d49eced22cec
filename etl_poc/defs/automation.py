"""What runs by itself: a sensor on the landing zone that requests exactly the days new or
changed files hold, and a daily schedule for the day that just ended. (The analytics asset
materializes itself once the tables are new and their blocking checks passed: its
AutomationCondition, in defs/analytics.py.)"""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta

import dagster as dg

from etl_poc.lakehouse.landing_zone import file_version, scan_landing_zone
from etl_poc.logic.spec import ENGINES
from etl_poc.settings import settings

from .assets import asset_key
from .jobs import compare_engines
from .partitions import daily
from .resources import DataDirectory
from .tags import range_tags

LANDING_SENSOR = "landing_files_changed"
DAILY_SCHEDULE = "compare_engines_daily"
AUTOMATION_SENSOR = "declarative_automation"
# What the daemon does with them until someone switches them in the UI (ETL_POC_AUTOMATION).
AUTOMATION_STATUS = (
    dg.DefaultSensorStatus.RUNNING
    if settings().automation == "on"
    else dg.DefaultSensorStatus.STOPPED
)


def landing_state(data_dir: DataDirectory) -> dict[str, dict]:
    """Each landing file's version and the days it holds (the landing index's, computed once
    per version; None for a quarantined file or one without a usable timestamp)."""
    paths = data_dir.paths
    files = [paths.landing / info.path for info in scan_landing_zone(paths.landing)]
    facts = paths.landing_index.facts(files)
    return {
        path.relative_to(paths.landing).as_posix(): {
            "version": file_version(path),
            "days": facts[path].days and [d.isoformat() for d in facts[path].days],
        }
        for path in files
    }


def _days(entry: dict | None) -> set[date]:
    if not entry or not entry["days"]:
        return set()
    first, last = (date.fromisoformat(d) for d in entry["days"])
    return {first + timedelta(days=i) for i in range((last - first).days + 1)}


def touched_days(previous: dict[str, dict], current: dict[str, dict]) -> set[date]:
    """The days whose rows a change of the landing zone may change: every day a new, changed
    or removed file held, before and after the change."""
    touched: set[date] = set()
    for name in previous.keys() | current.keys():
        before, after = previous.get(name), current.get(name)
        if before is None or after is None or before["version"] != after["version"]:
            touched |= _days(before) | _days(after)
    return touched


def window_to_request(touched: set[date], materialized: set[date], first: date, last: date):
    """The partition range a run must redo for the `touched` days, within [first, last]: from
    the first touched day to the last touched one, or further to the last day already
    materialized after it (sessions continue from the day before, so every later day that was
    built on the old rows is rebuilt). None when nothing lies within the partitions."""
    inside = {day for day in touched if first <= day <= last}
    if not inside:
        return None
    start = min(inside)
    end = max({*inside, *(day for day in materialized if start < day <= last)})
    return start, end


def _materialized(instance: dg.DagsterInstance) -> tuple[set[date], set[date]]:
    """The days materialized by any engine's events table, and by every engine's."""
    per_engine = [
        {
            date.fromisoformat(k)
            for k in instance.get_materialized_partitions(asset_key(e, "events"))
        }
        for e in ENGINES
    ]
    return set.union(*per_engine), set.intersection(*per_engine)


@dg.sensor(
    name=LANDING_SENSOR,
    job=compare_engines,
    minimum_interval_seconds=60,
    default_status=AUTOMATION_STATUS,
    description="Watches the landing zone (its cursor: every file's version and the days it "
    "holds) and requests one compare_engines run for the days new, changed or removed files "
    "hold, continued to the last day already built after them (sessions carry over). Its "
    "first tick requests only days not yet built by every engine and no older than "
    "ETL_POC_SENSOR_LOOKBACK_DAYS before the last partition.",
)
def landing_files_changed(context: dg.SensorEvaluationContext, data_dir: DataDirectory):
    current = landing_state(data_dir)
    first_partition = date.fromisoformat(daily.get_first_partition_key())
    last_key = daily.get_last_partition_key()
    if last_key is None:
        return dg.SkipReason("no daily partition exists yet")
    last_partition = date.fromisoformat(last_key)
    any_engine, every_engine = _materialized(context.instance)
    if context.cursor is None:
        cutoff = last_partition - timedelta(days=settings().sensor_lookback_days)
        touched = {d for d in touched_days({}, current) if d >= cutoff and d not in every_engine}
    else:
        touched = touched_days(json.loads(context.cursor), current)
    cursor = json.dumps(current, sort_keys=True)
    window = window_to_request(touched, any_engine, first_partition, last_partition)
    if window is None:
        return dg.SensorResult(
            skip_reason=f"no new or changed landing file holds a day to run ({len(current)} files)",
            cursor=cursor,
        )
    start, end = window
    run_key = hashlib.sha256(cursor.encode()).hexdigest()[:16]
    context.log.info(f"landing changed: requesting [{start}, {end}] ({len(touched)} days touched)")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=run_key, tags=range_tags(start.isoformat(), end.isoformat()))
        ],
        cursor=cursor,
    )


compare_engines_daily = dg.build_schedule_from_partitioned_job(
    compare_engines,
    name=DAILY_SCHEDULE,
    hour_of_day=1,
    minute_of_hour=0,
    description="compare_engines for the day that just ended, at 01:00 UTC. Off by default: "
    "the landing sensor already runs the days files arrive for; turn this on instead where "
    "the sources deliver by a deadline and a day must run whether or not files changed.",
)

# Evaluates the assets' AutomationConditions (clickstream_analytics: eager, once the blocking
# checks on its inputs passed); Dagster's default one, with the project's default status.
declarative_automation = dg.AutomationConditionSensorDefinition(
    AUTOMATION_SENSOR,
    target=dg.AssetSelection.all(),
    default_status=AUTOMATION_STATUS,
    minimum_interval_seconds=30,
    description="Materializes the assets whose AutomationCondition asks for it: the analytics "
    "once every engine's tables are new and their blocking checks passed.",
)
