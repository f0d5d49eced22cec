"""`etl-poc` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_version_exit_codes_and_one_line_errors(tmp_path):
    """--version; a usage error exits 2, a failing command 1 with one line naming it, no
    traceback."""
    version = subprocess.run([sys.executable, "-m", "etl_poc.cli", "--version"],
                             capture_output=True, text=True, check=True)  # fmt: skip
    assert version.stdout.startswith("etl-poc ")
    assert version.stdout.strip() != "etl-poc"
    usage = subprocess.run([sys.executable, "-m", "etl_poc.cli", "no-such-command"],
                           capture_output=True, text=True)  # fmt: skip
    assert usage.returncode == 2
    assert "invalid choice" in usage.stderr
    failed = subprocess.run(
        [sys.executable, "-m", "etl_poc.cli", "summary", "--data", str(tmp_path / "none")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert failed.returncode == 1
    assert failed.stderr.startswith("etl-poc summary: error: "), failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert "Traceback" not in failed.stderr


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


def test_window_is_the_landing_zones_partitions_as_run_tags(tmp_path, capsys):
    """What docker/demo.sh runs compare_engines over: every day of the generated window,
    including the day that sessions run into past the last midnight."""
    landing = tmp_path / "landing"
    main(["generate", "--events", "2000", "--out", str(landing), "--formats", "parquet",
          "--days", "2", "--incremental-days", "1", "--no-progress"])  # fmt: skip
    capsys.readouterr()
    assert main(["window", "--data", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "2024-01-01...2024-01-04\n"  # dg launch --partition-range
    assert main(["window", "--data", str(tmp_path), "--tags"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "dagster/asset_partition_range_start": "2024-01-01",
        "dagster/asset_partition_range_end": "2024-01-04",
    }
    # Without a manifest (a source's own files), the files' own days tell.
    (landing / "manifest_2000ev.json").unlink()
    assert main(["window", "--data", str(tmp_path), "--tags"]) == 0
    window = json.loads(capsys.readouterr().out)
    assert window["dagster/asset_partition_range_start"] == "2024-01-01"
    assert "2024-01-03" <= window["dagster/asset_partition_range_end"] <= "2024-01-04"
    with pytest.raises(SystemExit) as stop:
        main(["window", "--data", str(tmp_path / "empty")])
    assert stop.value.code == 1
    assert "no landing files" in capsys.readouterr().err


def test_landing_window_stays_within_the_partitions(tmp_path):
    from datetime import date

    from etl_poc.lakehouse.landing_zone import landing_window
    from etl_poc.lakehouse.paths import Paths

    landing = Paths(tmp_path).landing
    landing.mkdir()
    (landing / "manifest_x.json").write_text(json.dumps({"window": ["2023-12-01", "2030-01-01"]}))
    assert landing_window(Paths(tmp_path).landing_index, date(2024, 1, 1), date(2026, 11, 29)) == (
        date(2024, 1, 1), date(2026, 11, 29),
    )  # fmt: skip
    empty = Paths(tmp_path / "none").landing_index
    assert landing_window(empty, date(2024, 1, 1), date(2026, 11, 29)) is None


def test_health_asks_the_url_for_a_200(capsys):
    """The containers' health check (`etl-poc health`, URL from ETL_POC_HEALTH_URL)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/ok" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert main(["health", f"{base}/ok"]) == 0
        for url in (f"{base}/down", "http://127.0.0.1:1/"):
            with pytest.raises(SystemExit) as stop:
                main(["health", url, "--timeout", "2"])
            assert stop.value.code == 1
            assert url in capsys.readouterr().err
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("env", "data", "home"),
    [
        ({}, "data", "dagster_home"),
        ({"ETL_POC_DATA_DIR": "/srv/etl", "DAGSTER_HOME": "/srv/home"}, "/srv/etl", "/srv/home"),
    ],
)
def test_the_makefile_honours_the_callers_data_dir_and_dagster_home(env, data, home):
    """`ETL_POC_DATA_DIR=/x make query` uses /x, not ./data (issue 15, security)."""
    import os

    root = Path(__file__).parents[1]
    clean = {k: v for k, v in os.environ.items() if k not in ("ETL_POC_DATA_DIR", "DAGSTER_HOME")}
    run = subprocess.run(
        ["make", "-s", "-n", "-C", str(root), "query", "SQL=SELECT 1"],
        env={**clean, **env, "MAKEFLAGS": ""}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert f"etl-poc query --data {data} " in run.stdout
    shown = subprocess.run(
        ["make", "-s", "-C", str(root), "-f", "Makefile", "-f", "-", "show"],
        input="show:\n\t@echo $$DAGSTER_HOME $$ETL_POC_DATA_DIR\n",
        env={**clean, **env}, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert shown[0].endswith(home)
    assert shown[1] == data
