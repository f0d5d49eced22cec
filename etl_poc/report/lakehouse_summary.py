"""What the lakehouse holds after a run, in a few lines: rows, sessions and rejects per
engine's Iceberg tables, the landing files not ingested (quarantined, with why), whether the
two engines' tables are equal, and the latest result of every check in the Dagster instance. `make demo` prints it; `etl-poc summary` runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

from etl_poc.lakehouse import iceberg
from etl_poc.lakehouse.landing_zone import other_files, scan_landing_zone
from etl_poc.lakehouse.paths import Paths
from etl_poc.logic.compare import compare_frames
from etl_poc.logic.spec import ENGINES


def _check_lines(instance) -> list[str]:
    from etl_poc.definitions import defs

    lines = []
    for key in sorted(defs.resolve_asset_graph().asset_check_keys, key=str):
        record = instance.get_latest_asset_check_evaluation_record(key)
        evaluation = record and record.event and record.event.dagster_event.event_specific_data
        if record is None or record.event is None:
            state = "not run"
        elif not hasattr(evaluation, "passed"):  # planned by a run that gave no result for it
            state = f"no result ({record.status.value.lower()}, run {record.run_id[:8]})"
        else:
            state = "passed" if evaluation.passed else "FAILED"
        lines.append(f"  {key.asset_key.to_user_string()}:{key.name}: {state}")
    return lines


def summarize(data_dir: Path, catalog, instance=None) -> str:
    """`catalog`: the lakehouse's Iceberg catalog; `instance`: the Dagster instance whose
    check results to show (none: checks not shown)."""
    paths = Paths(data_dir)
    warehouse = paths.warehouse
    lines = [f"Lakehouse {warehouse} (Iceberg catalog '{iceberg.CATALOG_NAME}')"]
    events = {}
    for engine in ENGINES:
        frame = iceberg.read_window(catalog, engine, iceberg.EVENTS)
        rejects = iceberg.read_window(catalog, engine, iceberg.REJECTS)
        if frame is None:
            lines.append(f"  {engine}: no table yet")
            continue
        events[engine] = frame
        days = frame["event_date"]
        lines.append(
            f"  {engine}.{iceberg.EVENTS_TABLE}: {frame.height:,} events, "
            f"{frame['session_id'].n_unique():,} sessions, {frame['user_id'].n_unique():,} users, "
            f"days {days.min()} .. {days.max()}; "
            f"{0 if rejects is None else rejects.height:,} rows in {iceberg.REJECTS_TABLE}"
        )
    for manifest in sorted(paths.landing.glob("manifest_*.json")):
        expected = json.loads(manifest.read_text()).get("expected", {})
        if expected:
            lines.append(
                f"  the generator's {manifest.name} expects {expected['valid_unique_events']:,} "
                f"events and {expected['must_reject']:,} rejects once every day is processed"
            )
    files = [paths.landing / info.path for info in scan_landing_zone(paths.landing)]
    quarantined = paths.landing_index.rejected(files)
    ignored = other_files(paths.landing)
    if quarantined or ignored:
        lines.append(f"  landing files NOT ingested: {len(quarantined)} quarantined, "
                     f"{len(ignored)} of no landing format")  # fmt: skip
        lines.extend(f"    {name}: {why}" for name, why in quarantined.items())
        lines.extend(f"    {name.as_posix()}: not CSV, csv.gz or Parquet" for name in ignored)
    first, *others = ENGINES
    for other in (o for o in others if first in events and o in events):
        comparison = compare_frames(events[first], events[other])
        verdict = "identical" if comparison.equal else "DIFFERENT"
        lines.append(f"  {first} vs {other} events: {verdict} ({comparison.summary()})")
    if instance is not None:
        lines.append("Checks (latest evaluation):")
        lines.extend(_check_lines(instance))
    return "\n".join(lines)
