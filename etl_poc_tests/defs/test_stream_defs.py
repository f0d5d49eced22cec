"""The speed layer in the graph: each sessionizer observed from its status file, and the
daily reconciliation, whose checks pass when the stores hold the batch layer's events and
fail, naming the ids, when they do not."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime

import dagster as dg
import polars as pl
import pytest

from etl_poc.bench.plain import run_layers
from etl_poc.definitions import defs
from etl_poc.defs.resources import DataDirectory, resources_for
from etl_poc.defs.stream import (
    AGREE_CHECK,
    RECONCILIATION,
    sessionizer_key,
    speed_layer_reconciliation,
)
from etl_poc.lakehouse.iceberg import open_catalog
from etl_poc.lakehouse.paths import Paths
from etl_poc.stream import reconcile, store
from etl_poc.stream.service import database_of, store_path
from etl_poc.stream.sessionizer import STREAM_ENGINES, status_path
from etl_poc_tests.defs.test_assets import _landing

pytestmark = pytest.mark.chdb  # make test runs these in a process of their own

DAY = "2024-01-02"
START = date(2024, 1, 1)


def test_each_sessionizer_is_observed_from_its_status(tmp_path):
    status = {"engine": "polars", "updated_at": time.time(), "lag": 42, "messages": 1000,
              "throughput_per_second": 5000.0, "latency_ms": {"p50": 80.0, "p95": 150.0, "p99": 210.0},
              "stored": 990, "dead_letters": 5, "late": 1, "duplicates": 4, "batches": 3,
              "peak_rss_bytes": 2**30, "reasons": {"LATE_EVENT": 1}}  # fmt: skip
    Paths(tmp_path).stream.mkdir(parents=True)
    status_path(Paths(tmp_path).stream, "polars").write_text(json.dumps(status))
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("observe_streams")  # what the minutely schedule runs
    result = job.execute_in_process(
        resources=resources_for(DataDirectory(path=str(tmp_path))), instance=instance
    )
    assert result.success
    observed = {}
    for engine in STREAM_ENGINES:
        records = instance.fetch_observations(sessionizer_key(engine), limit=1).records
        observed[engine] = records[0].asset_observation.metadata
    assert observed["polars"]["consumer_lag_messages"].value == 42
    assert observed["polars"]["latency_p95_ms"].value == 150.0
    assert observed["polars"]["state"].value == "running"
    assert observed["polars"]["peak_rss_mib"].value == 1024.0
    assert "not started" in observed["spark"]["state"].value


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory):
    """A small landing zone through the Polars lineage (no Dagster) into Iceberg."""
    data = _landing(tmp_path_factory.mktemp("stream-defs"))
    run_layers("polars", data, START, date(2024, 1, 5), START, datetime.now(UTC))
    return data


def _fill_stores(data, drop: str | None = None) -> pl.DataFrame:
    """Both engines' stores given the batch layer's events of the day (one left out of
    spark's when `drop` says so), as a sessionizer would have written them."""
    catalog = open_catalog(Paths(data).warehouse)
    rows = pl.from_arrow(
        catalog.load_table("polars.clickstream_events")
        .scan(row_filter=f"event_date = '{DAY}'")
        .to_arrow()
    ).with_columns(produced_at=pl.lit(datetime.now(UTC)).cast(pl.Datetime("ms", "UTC")))
    for engine in STREAM_ENGINES:
        events = rows.filter(pl.col("event_id") != drop) if engine == "spark" and drop else rows
        with store.opened(path=store_path(data, engine), database=database_of(engine)) as opened:
            opened.command(f"TRUNCATE TABLE {store.EVENTS}")
            opened.write_events(events.select(list(store.EVENT_COLUMNS)).to_arrow())
    return rows


def _reconcile(data):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [speed_layer_reconciliation], partition_key=DAY, instance=instance,
        resources=resources_for(DataDirectory(path=str(data))), selection=[RECONCILIATION],
    )  # fmt: skip
    checks = {
        e.asset_check_key.name: e for e in (
            event.event_specific_data for event in result.all_events
            if event.event_type_value == "ASSET_CHECK_EVALUATION"
        )
    }  # fmt: skip
    return result, checks


def test_the_reconciliation_passes_when_the_stores_hold_the_batch_events(lakehouse):
    rows = _fill_stores(lakehouse)
    result, checks = _reconcile(lakehouse)
    assert result.success
    assert set(checks) == {"polars_stream_matches_batch", "spark_stream_matches_batch", AGREE_CHECK}
    assert all(check.passed for check in checks.values())
    metadata = checks["polars_stream_matches_batch"].metadata
    assert metadata["batch_events"].value == metadata["stream_events"].value == rows.height


def test_the_reconciliation_fails_naming_an_event_the_speed_layer_lost(lakehouse):
    rows = _fill_stores(lakehouse, drop=None)
    lost = rows["event_id"].sort()[0]
    _fill_stores(lakehouse, drop=lost)
    _result, checks = _reconcile(lakehouse)
    assert checks["polars_stream_matches_batch"].passed
    spark = checks["spark_stream_matches_batch"]
    assert not spark.passed
    assert spark.metadata["missing"].value == 1
    assert lost in spark.metadata["samples"].value
    assert not checks[AGREE_CHECK].passed
    with store.opened(path=store_path(lakehouse, "spark"), database=database_of("spark")) as opened:
        assert reconcile.stream_events(opened, date.fromisoformat(DAY)).height == rows.height - 1


def test_the_stream_report_prints_the_reconciliation_and_says_when_engines_disagree(
    lakehouse, capsys
):
    from etl_poc.settings import Settings
    from etl_poc.stream.service import report

    rows = _fill_stores(lakehouse)
    assert report(Settings(), lakehouse) == 0
    printed = capsys.readouterr().out
    assert f"the engines agree: {rows.height:,} and {rows.height:,} events stored" in printed
    assert "live funnel (chdb at" in printed
    _fill_stores(lakehouse, drop=rows["event_id"].sort()[-1])
    assert report(Settings(), lakehouse) == 1
    assert "the engines DISAGREE" in capsys.readouterr().out
