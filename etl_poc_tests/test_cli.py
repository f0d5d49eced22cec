"""`etl-poc` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from etl_poc.cli import main


def test_generate_writes_files_and_prints_where(tmp_path, capsys):
    code = main(
        ["generate", "--events", "3000", "--out", str(tmp_path), "--formats", "parquet",
         "--days", "2", "--incremental-days", "1", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "Generated 3,000 events" in out
    assert "bulk/bulk_data_3000ev.parquet" in out
    manifest = json.loads((tmp_path / "manifest_3000ev.json").read_text())
    assert manifest["days"] == 2
    assert manifest["formats"] == ["parquet"]
    assert not list(tmp_path.rglob("*.csv"))


def test_defect_rates_can_be_scaled_and_overridden(tmp_path, capsys):
    main(
        ["generate", "--events", "2000", "--out", str(tmp_path), "--dirty-scale", "0",
         "--defect-rate", "duplicate=0.05", "--label", "x", "--no-progress"]
    )  # fmt: skip
    defects = json.loads((tmp_path / "manifest_x.json").read_text())["defects"]
    assert defects["duplicate"] > 50
    assert sum(defects.values()) == defects["duplicate"]


def test_a_second_size_in_the_same_directory_is_flagged(tmp_path, capsys):
    main(["generate", "--events", "500", "--out", str(tmp_path), "--no-progress"])
    main(["generate", "--events", "600", "--out", str(tmp_path), "--no-progress"])
    assert "would be ingested too" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--formats", "parquet,xml"], "formats are a comma list"),
        (["--defect-rate", "typo=0.1"], "unknown defect kind"),
        (["--defect-rate", "duplicate"], "expected KIND=RATE"),
        (["--events", "0"], "must be at least 1"),
        (["--size", "small", "--events", "5"], "not allowed with"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--out", str(tmp_path), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_console_script_runs_as_a_module(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "etl_poc.cli",
            "generate",
            "--events",
            "100",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Generated 100 events" in result.stdout
