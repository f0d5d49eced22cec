"""Backups and restores (issue 15, defect 10): a copied data directory wrote into the
original's warehouse; a backup restored elsewhere is an independent lakehouse with every row."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from etl_poc.cli import main as cli
from etl_poc.lakehouse import iceberg, polars_runner
from etl_poc.lakehouse.paths import Paths

WINDOW = (date(2024, 1, 1), date(2024, 1, 4))


def _build(data: Path) -> None:
    cli(["generate", "--events", "3000", "--formats", "csv", "--days", "3",
         "--incremental-days", "0", "--start-date", "2024-01-01", "--out", str(data / "landing"),
         "--no-progress"])  # fmt: skip
    runner = polars_runner.Runner(Paths(data), date(2024, 1, 1), datetime(2024, 2, 1, tzinfo=UTC))
    for layer in ("raw", "cleansed", "enriched", "sessionized"):
        getattr(runner, layer)(*WINDOW)
    runner.events(*WINDOW, "the-run", iceberg.open_catalog(Paths(data).warehouse))


def _tables(data: Path) -> dict[str, pl.DataFrame]:
    catalog = iceberg.open_catalog(Paths(data).warehouse)
    return {
        layout.name: iceberg.read_window(catalog, "polars", layout).sort(pl.all())
        for layout in (iceberg.EVENTS, iceberg.REJECTS)
    }


def test_a_copied_data_directory_refuses_to_write_into_the_original(tmp_path):
    original = tmp_path / "data"
    _build(original)
    subprocess.run(["cp", "-a", str(original), str(tmp_path / "copy")], check=True)
    catalog = iceberg.open_catalog(Paths(tmp_path / "copy").warehouse)
    with pytest.raises(RuntimeError, match=r"outside this data directory's warehouse .*copy"):
        iceberg.table_for(catalog, "polars", iceberg.EVENTS)


def test_backup_delete_restore_finds_every_row_in_an_independent_lakehouse(tmp_path, capsys):
    original, backup, restored = tmp_path / "data", tmp_path / "backup", tmp_path / "restored"
    _build(original)
    before = _tables(original)
    assert before[iceberg.EVENTS_TABLE].height > 2000
    assert cli(["backup", str(backup), "--data", str(original)]) == 0
    assert not (tmp_path / "backup.partial").exists()
    with pytest.raises(SystemExit):  # a second backup into the same place is refused
        cli(["backup", str(backup), "--data", str(original)])
    shutil.rmtree(original)
    assert cli(["restore", str(backup), "--data", str(restored)]) == 0
    after = _tables(restored)
    for name, rows in before.items():
        assert after[name].equals(rows), name
    catalog = iceberg.open_catalog(Paths(restored).warehouse)
    table = iceberg.table_for(catalog, "polars", iceberg.EVENTS)
    assert table.location().startswith(f"file://{(restored / 'warehouse').resolve()}/")
    # The day-by-run properties came along, and a run of the restored directory works.
    assert iceberg.tables_written_by_one_run(catalog, "polars", *WINDOW)[0]
    runner = polars_runner.Runner(
        Paths(restored), date(2024, 1, 1), datetime(2024, 2, 1, tzinfo=UTC)
    )
    for layer in ("raw", "cleansed", "enriched", "sessionized"):
        getattr(runner, layer)(*WINDOW)
    runner.events(*WINDOW, "after-restore", catalog)
    again = _tables(restored)
    assert again[iceberg.EVENTS_TABLE].equals(before[iceberg.EVENTS_TABLE])
    assert not original.exists()
    with pytest.raises(SystemExit):  # restoring over a lakehouse is refused
        cli(["restore", str(backup), "--data", str(restored)])
    assert "already holds a lakehouse" in capsys.readouterr().err
