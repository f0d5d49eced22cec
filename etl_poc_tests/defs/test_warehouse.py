"""The warehouse in the graph, on tiny data: two engines' lineages, the operational database
captured, then every dbt model and test as assets and checks; the marts are identical across
engines, the daily marts rebuilt incrementally after a re-run equal a fresh build, and the
analyst queries answer."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from etl_poc.defs.warehouse import CHECKED_MART, IDENTICAL_CHECK
from etl_poc.lakehouse import iceberg
from etl_poc.lakehouse.paths import Paths
from etl_poc.logic import spec
from etl_poc.warehouse import marts, project, raw
from etl_poc_tests.defs.test_assets import _checks, _landing, _run

pytestmark = pytest.mark.slow
WINDOW = ("2024-01-01", "2024-01-04")  # the bulk days and the incremental one


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data = _landing(tmp_path_factory.mktemp("warehouse"))
    instance = dg.DagsterInstance.ephemeral()
    for job in ("polars_etl", "duckdb_etl"):
        assert _run(job, data, *WINDOW, instance=instance).success, job
    assert _run("oltp_cdc", data, instance=instance).success
    result = _run("build_warehouse", data, instance=instance)
    return data, instance, result


def test_every_model_builds_and_every_dbt_test_passes(built):
    _, instance, result = built
    assert result.success
    checks = _checks(result)
    assert len(checks) > 20
    failed = [name for name, passed in checks.items() if not passed]
    assert failed == []
    assert checks[f"{CHECKED_MART.to_user_string()}:{IDENTICAL_CHECK}"] is True
    for mart in project.MARTS:
        event = instance.get_latest_materialization_event(dg.AssetKey(["warehouse", mart]))
        assert event is not None, mart
        metadata = event.asset_materialization.metadata
        assert "raw_load_seconds" in metadata


def test_the_marts_hold_what_the_lakehouse_and_the_source_hold(built):
    data, _, _ = built
    database = Paths(data).dbt_warehouse
    sessions = marts.read_mart(database, "mart_user_sessions")
    events = iceberg.read_window(iceberg.open_catalog(Paths(data).warehouse), "polars",
                                 iceberg.EVENTS)  # fmt: skip
    assert sessions.height == events["session_id"].n_unique()
    assert sessions["events"].sum() == events.height
    daily = marts.read_mart(database, "mart_daily_business_metrics")
    everyone = daily.filter(daily["user_tier"] == "all")
    assert everyone["sessions"].sum() == sessions.height
    tiers = marts.read_mart(database, "mart_customer_tier_analytics")
    assert sorted(tiers["tier"]) == sorted(spec.USER_TIERS)
    assert (tiers["max_discount_percent_given"].fill_null(0)
            <= tiers["max_discount_percent_allowed"]).all()  # fmt: skip
    for name in marts.queries():
        assert marts.run_query(database, name).height > 0, name


def test_a_rerun_day_rebuilds_only_its_days_and_equals_a_fresh_build(built, tmp_path):
    data, instance, _ = built
    database = Paths(data).dbt_warehouse
    assert _run("polars_etl", data, "2024-01-02", "2024-01-02", instance=instance).success
    loaded = raw.load(iceberg.open_catalog(Paths(data).warehouse), database)
    assert loaded.copied["polars"] == [__import__("datetime").date(2024, 1, 2)]
    assert loaded.copied["duckdb"] == []
    project.run(database, ["build"], days=loaded.changed_days("polars"))
    fresh = tmp_path / "fresh.duckdb"
    shutil.copyfile(database, fresh)
    project.run(fresh, ["build", "--full-refresh"])
    assert all(c.equal for c in marts.compare_marts(database, fresh).values())


def test_the_projects_default_vars_are_the_spec():
    declared = yaml.safe_load((project.PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    given = project.variables()
    for name in ("tax_rate_percent", "max_discount_percent", "user_tiers", "event_types"):
        assert declared[name] == given[name], name


def test_the_analyst_queries_answer_within_the_target(built):
    data, _, _ = built
    measured = marts.latencies(Paths(data).dbt_warehouse, repeat=5, warmup=1)
    assert [m.name for m in measured] == list(marts.queries())
    assert all(m.rows > 0 and m.p50_ms > 0 for m in measured)


def test_no_dbt_file_is_written_into_the_source_tree(built):
    assert not (Path(project.PROJECT_DIR) / "logs").exists()
