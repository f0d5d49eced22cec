from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from etl_poc.lakehouse.landing_zone import (
    LandingIndex,
    landing_version,
    scan_landing_zone,
    timestamp_day_range,
)
from etl_poc.logic.spec import TEXT_COLUMNS
from etl_poc_tests.conftest import SMALL_EVENTS


def test_scan_lists_files_with_rows_from_the_manifest(small_landing):
    root = small_landing.manifest_path.parent
    files = scan_landing_zone(root)
    assert len(files) == 8
    assert sum(f.rows for f in files if f.format == "parquet") == SMALL_EVENTS
    assert all(f.bytes > 0 for f in files)


def test_a_file_without_manifest_is_listed_with_unknown_rows(tmp_path: Path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "events.csv").write_text("event_id\n1\n")
    (tmp_path / "notes.txt").write_text("ignored")
    (files,) = scan_landing_zone(tmp_path)
    assert files.path.as_posix() == "mine/events.csv"
    assert files.rows is None
    before = landing_version([files], tmp_path)
    (tmp_path / "mine" / "events.csv").write_text("event_id\n1\n2\n")
    assert landing_version(scan_landing_zone(tmp_path), tmp_path) != before


def test_missing_directory_is_empty(tmp_path: Path):
    assert scan_landing_zone(tmp_path / "nowhere") == []


def _parquet(path: Path, timestamps: list) -> Path:
    n = len(timestamps)
    columns = {c: ["x"] * n for c in TEXT_COLUMNS}
    columns.update(event_id=[str(i) for i in range(n)], timestamp=timestamps)
    pq.write_table(pa.table(columns), path)
    return path


def test_a_file_holds_the_utc_days_of_its_parseable_timestamps(tmp_path: Path):
    text = _parquet(
        tmp_path / "a.parquet",
        [" 2024-01-03 10:00:00", "2024-01-05T23:59:59-05:00", "yesterday", None, "2023-12-31"],
    )
    assert timestamp_day_range(text, tmp_path) == (date(2024, 1, 3), date(2024, 1, 6))
    assert timestamp_day_range(_parquet(tmp_path / "b.parquet", ["soon", None]), tmp_path) is None
    csv = tmp_path / "c.csv"
    csv.write_text(
        f"{','.join(TEXT_COLUMNS)}\n1,u,2024-01-03 10:00:00Z,,,,,\n2,u,2024-01-04 10:00,,,,,\n"
    )
    assert timestamp_day_range(csv, tmp_path) == (date(2024, 1, 3), date(2024, 1, 3))


def test_only_files_with_a_day_in_the_window_are_read(tmp_path: Path):
    start = date(2024, 1, 1)
    files = [
        _parquet(tmp_path / "early.parquet", ["2024-01-02 00:00:00", "2024-01-03 23:00:00"]),
        _parquet(tmp_path / "late.parquet", ["2024-01-09 23:30:00-01:00", "later"]),
        _parquet(tmp_path / "none.parquet", ["never"]),
    ]
    index = LandingIndex(tmp_path, tmp_path / "index")
    window = (date(2024, 1, 10), date(2024, 1, 11))
    assert [p.name for p in index.files_for_window(files, *window, start)] == ["late.parquet"]
    # A window with the start date reads every file (unusable rows of a file without a usable
    # day are attributed to the start date).
    assert index.files_for_window(files, start, date(2024, 1, 2), start) == files
    # The index is reused, and a rewritten file is looked at again.
    assert "early.parquet" in (tmp_path / "index" / "files.json").read_text()
    _parquet(tmp_path / "early.parquet", ["2024-01-10 08:00:00"])
    assert len(index.files_for_window(files, *window, start)) == 2


def test_a_corrected_copy_with_its_mtime_kept_is_read_again(tmp_path: Path):
    """`cp -p` / `rsync -t` of a corrected file of the same size keeps its mtime: the index
    must still see the new version (defect 8 of issue 15)."""
    import os
    import shutil

    start = date(2024, 1, 1)
    landing = tmp_path / "landing"
    landing.mkdir()
    target = _parquet(landing / "day.parquet", ["2024-01-02 00:00:00"])
    index = LandingIndex(landing, tmp_path / "index")
    window = (date(2024, 1, 9), date(2024, 1, 10))
    assert index.files_for_window([target], *window, start) == []
    before = target.stat()
    corrected = _parquet(tmp_path / "corrected.parquet", ["2024-01-09 00:00:00"])
    assert corrected.stat().st_size == before.st_size  # the same size: only the day differs
    shutil.copy2(corrected, target)  # as cp -p: content replaced, mtime copied
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old mtime kept
    assert target.stat().st_mtime_ns == before.st_mtime_ns
    assert index.files_for_window([target], *window, start) == [target]


def test_a_late_daily_run_reads_fewer_files_and_the_same_rows(tmp_path: Path):
    from etl_poc.cli import main as cli
    from etl_poc.lakehouse import layer_store, polars_runner
    from etl_poc.lakehouse.landing_readers import polars_read_landing
    from etl_poc.lakehouse.paths import Paths
    from etl_poc.logic import polars_engine as engine
    from etl_poc.logic.compare import compare_frames

    cli(["generate", "--events", "6000", "--formats", "parquet", "--days", "2",
         "--incremental-days", "12", "--out", str(tmp_path / "landing"), "--no-progress"])  # fmt: skip
    paths, start = Paths(tmp_path), date(2024, 1, 1)
    processed_at = datetime(2024, 3, 1, tzinfo=UTC)
    day = date(2024, 1, 14)  # the last of 12 daily files after a 2-day bulk file
    result = polars_runner.Runner(paths, start, processed_at).raw(day, day + timedelta(days=1))
    assert result.counts["landing_files_skipped"] >= 5
    assert result.counts["landing_files"] + result.counts["landing_files_skipped"] == 13
    everything = [paths.landing / f.path for f in scan_landing_zone(paths.landing)]
    when = {"start_date": start, "processed_at": processed_at}
    landing = polars_read_landing(everything, paths.landing)
    expected = engine.raw(landing, start=day, end=day + timedelta(days=1), **when).collect()
    written = layer_store.read_layer(paths.layers, "polars", "raw", day, day + timedelta(days=1))
    assert written.height == expected.height > 100
    assert compare_frames(expected, written).equal
