from __future__ import annotations

from pathlib import Path

from etl_poc.lakehouse.landing_zone import landing_version, scan_landing_zone
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
