"""The operational database's assets in the graph: the oltp_cdc job loads the source, captures
it and rebuilds the current state, whose checks pass; each materialization says what it did
and what it cost."""

from __future__ import annotations

import dagster as dg
import pytest

from etl_poc.definitions import defs
from etl_poc.defs.oltp import EQUALS_SOURCE_CHECK, SOURCE, changes_key, state_key
from etl_poc.logic.spec import OLTP_TABLES
from etl_poc_tests.defs.test_assets import _checks, _landing, _run

pytestmark = pytest.mark.slow


def test_the_oltp_job_captures_the_source_and_its_checks_pass(tmp_path):
    data = _landing(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    result = _run("oltp_cdc", data, instance=instance)
    assert result.success
    checks = _checks(result)
    assert checks == {f"{state_key(t).to_user_string()}:{EQUALS_SOURCE_CHECK}": True
                      for t in OLTP_TABLES}  # fmt: skip
    source = instance.get_latest_materialization_event(SOURCE).asset_materialization.metadata
    assert source["days_applied"].value >= 3
    assert source["peak_rss_mib"].value > 0
    orders = instance.get_latest_materialization_event(changes_key("orders"))
    metadata = orders.asset_materialization.metadata
    assert metadata["changes_added"].value == metadata["changes_in_log"].value > 0
    assert metadata["capture_seconds"].value > 0
    again = _run("oltp_cdc", data, instance=instance)  # nothing new: nothing added
    assert again.success
    orders = instance.get_latest_materialization_event(changes_key("orders"))
    assert orders.asset_materialization.metadata["changes_added"].value == 0
    assert all(_checks(again).values())


def test_the_lineage_runs_from_the_source_to_the_current_state():
    graph = defs.resolve_asset_graph()
    for table in OLTP_TABLES:
        assert graph.get(changes_key(table)).parent_keys == {SOURCE}
        assert graph.get(state_key(table)).parent_keys == {changes_key(table)}
