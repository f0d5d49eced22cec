"""The UI as a person uses it, in a real browser: Debian's Chromium driven by Playwright, against
Dagster's webserver and daemon over a small materialized instance. Screenshots of each page
are kept under test-artifacts/browser/ (ETL_POC_TEST_ARTIFACTS overrides)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import dagster as dg
import pytest

from etl_poc.cli import main as cli
from etl_poc.dagster_service import DagsterService
from etl_poc.definitions import defs
from etl_poc.defs.resources import DataDirectory, ReportsDirectory, resources_for
from etl_poc.defs.tags import RANGE_START_TAG, range_tags
from etl_poc.lakehouse import iceberg
from etl_poc.lakehouse.paths import Paths
from etl_poc.logic.spec import ENGINES

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ETL_POC_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "browser"
LAST_DAY = "2024-01-03"

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("ETL_POC_REQUIRE_BROWSER"),
        reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run installs it)",
    ),
]


@pytest.fixture(scope="module")
def ui(tmp_path_factory, spark):
    """compare_engines over three days and the benchmark, kept in an instance on disk, then
    `dagster dev` (webserver and daemon) over it on a free loopback port."""
    root = tmp_path_factory.mktemp("ui")
    data, home = root / "data", root / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    cli(["generate", "--events", "3000", "--formats", "parquet", "--days", "2",
         "--incremental-days", "1", "--out", str(data / "landing"), "--no-progress"])  # fmt: skip
    resources = {
        **resources_for(DataDirectory(path=str(data))),
        "reports": ReportsDirectory(path=str(data / "reports")),
    }
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for job, tags in (("compare_engines", range_tags("2024-01-01", LAST_DAY)),
                          ("benchmark_report", {})):  # fmt: skip
            result = defs.resolve_job_def(job).execute_in_process(
                tags=tags, resources=resources, instance=instance, raise_on_error=False
            )
            assert result.success, job
    env = {
        "ETL_POC_DATA_DIR": str(data),
        "ETL_POC_REPORTS_DIR": str(data / "reports"),
        "ETL_POC_END_DATE": LAST_DAY,
        "ETL_POC_AUTOMATION": "off",
        "ETL_POC_SPARK_DRIVER_MEMORY": "2g",
    }
    with DagsterService(home, env, root / "dagster.log") as service:
        yield service, data


@pytest.fixture(scope="module")
def page(ui):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        # Dagster's newsletter prompt, whenever it shows up over a page.
        skip = page.get_by_role("button", name="Skip")
        page.add_locator_handler(skip, lambda button: button.click())
        yield page
        browser.close()


def _open(page, service: DagsterService, path: str, wait_for: str):
    page.goto(service.url + path)
    page.get_by_text(wait_for, exact=False).first.wait_for()


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_the_lineage_shows_every_engine_group(ui, page):
    service, _ = ui
    _open(page, service, "/asset-groups", "Global asset lineage")
    for group in (*ENGINES, "reference", "landing"):
        page.get_by_text(group, exact=True).first.wait_for()
    _shot(page, "lineage")


def test_an_asset_shows_its_days_and_a_days_own_row_count(ui, page):
    service, data = ui
    _open(page, service, "/assets/polars/clickstream_events?view=partitions", "Materialized")
    page.get_by_text("Materialized (3)").wait_for()  # every day of the partitions filled
    assert page.get_by_text("Missing (0)").count()
    _shot(page, "partitions")
    rows = iceberg.read_window(
        iceberg.open_catalog(Paths(data).warehouse), "polars", iceberg.EVENTS
    )
    day_rows = rows.filter(rows["event_date"].cast(str) == "2024-01-02").height
    assert 0 < day_rows < rows.height
    _open(page, service, "/assets/polars/clickstream_events?view=partitions&partition=2024-01-02",
          "dagster/row_count")  # fmt: skip
    row = page.locator("tr", has_text="dagster/row_count").first
    assert f"{day_rows:,}" in row.inner_text() or str(day_rows) in row.inner_text()
    _shot(page, "day-row-count")


def test_the_benchmark_shows_its_chart_as_an_image(ui, page):
    service, _ = ui
    _open(page, service, "/assets/benchmark", "spark_over_polars")
    page.locator("tr", has_text="chart").first.get_by_text("Show Markdown").click()
    image = page.locator('img[src^="data:image/png"]').first
    image.wait_for()
    assert image.evaluate("img => img.complete && img.naturalWidth > 300")
    _shot(page, "benchmark-chart")
    page.keyboard.press("Escape")


def _new_run(service: DagsterService, page, before: set[str]) -> dg.DagsterRun:
    """The one run launched since `before`, once it has finished."""
    with service.instance() as instance:
        for _ in range(300):
            new = [run for run in instance.get_runs() if run.run_id not in before]
            if new and new[0].is_finished:
                break
            page.wait_for_timeout(1000)
        (run,) = new
        return run


def _run_ids(service: DagsterService) -> set[str]:
    with service.instance() as instance:
        return {run.run_id for run in instance.get_runs()}


def test_a_check_shows_passed_and_runs_from_its_button(ui, page):
    service, _ = ui
    _open(page, service, "/assets/spark/clickstream_events?view=checks", "same_rows_as_polars")
    name = page.locator('[title="same_rows_as_polars"]').first
    name.click()
    assert "Succeeded" in name.locator("xpath=..").inner_text()  # the list item's status
    page.get_by_text("Passed", exact=True).first.wait_for()  # its latest evaluation
    _shot(page, "check-passed")
    # Run on its own, without partition tags: it compares the latest materialized window.
    before = _run_ids(service)
    page.locator("button", has_text="Execute").filter(has_not_text="Execute all").first.click()
    run = _new_run(service, page, before)
    assert run.status == dg.DagsterRunStatus.SUCCESS, service.failure(run.run_id)
    with service.instance() as instance:
        record = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(dg.AssetKey(["spark", "clickstream_events"]), "same_rows_as_polars")
        )
    evaluation = record.event.dagster_event.event_specific_data
    assert record.run_id == run.run_id
    assert evaluation.passed
    assert "latest materialization" in evaluation.metadata["compared"].value
    assert evaluation.metadata["window"].value == "[2024-01-01, 2024-01-04)"


def test_launching_one_partition_from_the_ui_succeeds(ui, page):
    service, _ = ui
    before = _run_ids(service)
    _open(page, service, "/assets/polars/raw_clickstream", "Materialize")
    page.get_by_role("button", name="Materialize").first.click()
    selection = page.get_by_placeholder("ex: 2024-01-01")
    selection.fill("2024-01-02")
    selection.press("Enter")
    page.get_by_text("1 partition").first.wait_for()
    _shot(page, "launch-dialog")
    page.get_by_role("button", name=re.compile(r"^Launch (1 run|backfill)$")).click()
    run = _new_run(service, page, before)
    assert run.status == dg.DagsterRunStatus.SUCCESS, service.failure(run.run_id)
    partition = run.tags.get("dagster/partition") or run.tags.get(RANGE_START_TAG)
    assert partition == "2024-01-02"
    _open(page, service, f"/runs/{run.run_id}", "RUN_SUCCESS")
    _shot(page, "launched-run")
