"""Both lineages materialized on tiny data, in process: the checks pass, re-runs change
nothing, day-by-day runs equal one range run, a tampered layer fails its check."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from etl_poc.cli import main as cli
from etl_poc.definitions import defs
from etl_poc.defs.assets import asset_key
from etl_poc.defs.jobs import BENCHMARK_JOB
from etl_poc.defs.resources import DataDirectory, ReportsDirectory, resources_for
from etl_poc.defs.tags import RANGE_END_TAG, RANGE_START_TAG
from etl_poc.lakehouse import iceberg, layer_store
from etl_poc.lakehouse.paths import Paths
from etl_poc.logic.compare import compare_frames
from etl_poc.logic.spec import ENGINES
from etl_poc.measure.layer_io import LAYER_FIGURES

START = date(2024, 1, 1)
INSTANCE = dg.DagsterInstance.ephemeral()  # the compared fixture's runs, for the benchmark


def _landing(data: Path, events: int = 4000) -> Path:
    cli([
        "generate", "--events", str(events), "--formats", "parquet", "--days", "3",
        "--incremental-days", "1", "--out", str(data / "landing"), "--no-progress",
    ])  # fmt: skip
    return data


def _resources(data: Path) -> dict:
    return {
        **resources_for(DataDirectory(path=str(data))),
        "reports": ReportsDirectory(path=str(data / "reports")),
    }


def _run(job_name: str, data: Path, first: str | None = None, last: str | None = None,
         instance: dg.DagsterInstance | None = None):  # fmt: skip
    """One run of a job over the partition range [first, last], like `dagster job execute`
    with range tags, with the code location's resources pointed at `data`."""
    job = defs.resolve_job_def(job_name)
    resources = _resources(data)
    tags = {RANGE_START_TAG: first, RANGE_END_TAG: last} if first else {}
    return job.execute_in_process(
        tags=tags, resources=resources, instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )  # fmt: skip


def _iceberg_rows(data: Path, engine: str) -> pl.DataFrame:
    return iceberg.read_window(iceberg.open_catalog(Paths(data).warehouse), engine, iceberg.EVENTS)


def _checks(result) -> dict[str, bool]:
    return {
        f"{e.asset_check_key.asset_key.to_user_string()}:{e.asset_check_key.name}": e.passed
        for e in (
            event.event_specific_data
            for event in result.all_events
            if event.event_type_value == "ASSET_CHECK_EVALUATION"
        )
    }


@pytest.fixture(scope="module")
def compared(tmp_path_factory, spark):
    """compare_engines over the 3-day bulk window, once for this module."""
    data = _landing(tmp_path_factory.mktemp("graph"))
    result = _run("compare_engines", data, "2024-01-01", "2024-01-03", instance=INSTANCE)
    return data, result


@pytest.mark.spark
def test_every_lineage_materializes_and_agrees(compared):
    data, result = compared
    assert result.success, result.all_events[-1]
    checks = _checks(result)
    # 5 equivalence checks per engine other than Polars, 6 quality checks per engine, Dagster's
    # schema-change check per layer and engine
    assert len(checks) == 5 * (len(ENGINES) - 1) + 6 * len(ENGINES) + 5 * len(ENGINES), checks
    assert all(checks.values()), checks
    polars_rows = _iceberg_rows(data, "polars")
    assert polars_rows.height > 2500
    for engine in ENGINES[1:]:
        assert compare_frames(polars_rows, _iceberg_rows(data, engine)).equal, engine
    assert polars_rows["event_date"].max() < date(2024, 1, 4)
    materialized = result.get_asset_materialization_events()
    expected = {asset_key(e, layer) for e in ENGINES for layer in (
        "raw", "cleansed", "enriched", "sessionized", "events")}  # fmt: skip
    expected.add(dg.AssetKey("ip_country_ranges"))  # the reference table, recorded each run
    assert {e.asset_key for e in materialized} == expected
    # A range run records each day's own row count on its partition, the window's total as
    # window_rows_out.
    sessionized = [
        e.materialization for e in materialized if e.asset_key == asset_key("spark", "sessionized")
    ]
    per_day = {m.partition: m.metadata["dagster/row_count"].value for m in sessionized}
    assert per_day == {
        day.isoformat(): rows for day, rows in polars_rows.group_by("event_date").len().iter_rows()
    }
    assert {m.metadata["window_rows_out"].value for m in sessionized} == {polars_rows.height}
    assert sessionized[0].metadata["figures"].value["peak_rss_bytes"] > 0
    # Each engine wrote its table's data files itself; PyIceberg committed them, naming the run.
    catalog = iceberg.open_catalog(Paths(data).warehouse)
    for engine in ENGINES:
        table = catalog.load_table(f"{engine}.{iceberg.EVENTS_TABLE}")
        files = table.inspect.files()["file_path"].to_pylist()
        assert files
        assert all(f"/data/{engine}-" in f for f in files), files
        summary = table.current_snapshot().summary.additional_properties
        assert summary["dagster.run_id"] == result.run_id
        assert summary["etl_poc.engine"] == engine


@pytest.mark.spark
def test_every_materialization_carries_what_it_cost(compared):
    _, result = compared
    by_asset = {}
    for event in result.get_asset_materialization_events():
        if event.asset_key != dg.AssetKey("ip_country_ranges"):  # a table, not a layer
            by_asset.setdefault(event.asset_key, event.materialization.metadata)  # one per run
    assert len(by_asset) == 5 * len(ENGINES)
    for key, metadata in by_asset.items():
        figures = metadata["figures"].value  # exact, for the benchmark asset
        missing = [k for k in LAYER_FIGURES if k not in figures]
        missing += [k for k in ("engine_versions", "window", "host", "high_water_gib",
                                "window_read_mib", "window_written_mib") if k not in metadata]  # fmt: skip
        assert not missing, (key, missing)
        assert figures["seconds"] >= figures["startup_seconds"] >= 0
        assert figures["peak_rss_bytes"] > 0
        # Polars computes its chain once: what the layer before handed over in memory was not
        # read (on this tiny window, the raw rows too); every other layer reads its input.
        in_memory = metadata["inputs_in_memory"].value
        if key.path[0] == "polars" and key.path[1] != "raw_clickstream":
            assert in_memory != "none", key
        else:
            assert in_memory == "none", key
            assert figures["bytes_read"] > 0
        assert figures["bytes_written"] > 0
        assert metadata["run_layers"].value == "raw, cleansed, enriched, sessionized, events"
        assert metadata["window_read_mib"].value == round(figures["bytes_read"] / 2**20, 2)
        assert metadata["window"].value == "[2024-01-01, 2024-01-04)"
        # Host facts as one text (not numbers the UI plots as flat lines); no raw byte counts.
        assert isinstance(metadata["host"].value, str)
        assert "cores" in metadata["host"].value
        assert not [k for k in metadata if k.endswith("_bytes")], key
        # Every column says what it holds; the events table's required columns are not null.
        columns = metadata["dagster/column_schema"].schema.columns
        assert [c.name for c in columns if not c.description] == [], key
        if key.path[-1] == "clickstream_events":
            assert not next(c for c in columns if c.name == "event_id").constraints.nullable
            assert next(c for c in columns if c.name == "country_code").constraints.nullable
    for engine in ENGINES:

        def figure(layer, name, engine=engine):
            if name in LAYER_FIGURES:
                return by_asset[asset_key(engine, layer)]["figures"].value[name]
            return by_asset[asset_key(engine, layer)][f"window_{name}"].value

        assert figure("cleansed", "rows_in") == figure("raw", "rows_out")
        assert figure("enriched", "rows_in") == figure("cleansed", "rows_out")
        assert figure("sessionized", "rows_in") == figure("enriched", "rows_out")
        assert figure("events", "rows_in") == figure("sessionized", "rows_out") + figure(
            "cleansed", "rejected_rows"
        )
        assert figure("raw", "rows_in") >= figure("raw", "rows_out")
    versions = by_asset[asset_key("spark", "raw")]["engine_versions"].value
    assert {"pyspark", "spark", "java"} <= set(versions)
    assert "polars" in by_asset[asset_key("polars", "raw")]["engine_versions"].value
    assert {"duckdb", "polars"} <= set(
        by_asset[asset_key("duckdb", "raw")]["engine_versions"].value
    )
    # The Spark session's start is reported once per run, on its first Spark step.
    with_session = [k for k, m in by_asset.items() if "spark_session_seconds" in m]
    assert with_session == [asset_key("spark", "raw")]
    # Spark's own stage times on every Spark step (and on no other engine's), from its driver.
    for key, metadata in by_asset.items():
        stages = metadata.get("spark_stages")
        assert (stages is not None) == (key.path[0] == "spark"), key
        if stages is not None:
            assert stages.value["stages"] > 0, key
            assert stages.value["tasks"] > 0, key
            assert stages.value["stage_seconds"] > 0, key
            assert 1 <= len(stages.value["slowest"]) <= 3, key


@pytest.mark.spark
def test_a_re_run_changes_nothing(compared):
    data, _ = compared
    before = _iceberg_rows(data, "polars")
    again = _run("polars_etl", data, "2024-01-01", "2024-01-03")
    assert again.success
    after = _iceberg_rows(data, "polars")
    assert compare_frames(before, after).equal


@pytest.mark.spark
def test_a_tampered_layer_fails_its_check(compared):
    data, _ = compared
    paths = Paths(data)
    # Drop one row of Spark's sessionized output for the first day.
    file = layer_store.window_files(paths.layers, "spark", "sessionized", START, date(2024, 1, 2))[
        0
    ]
    frame = pl.read_parquet(file)
    frame.slice(1).write_parquet(file)
    only_checks = dg.define_asset_job(
        "only_checks",
        selection=dg.AssetSelection.checks_for_assets(asset_key("spark", "sessionized")),
    )
    job = dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, jobs=[only_checks],
        resources=_resources(data),
    ).resolve_job_def("only_checks")  # fmt: skip
    result = job.execute_in_process(
        tags={RANGE_START_TAG: "2024-01-01", RANGE_END_TAG: "2024-01-01"},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    checks = _checks(result)
    assert checks["spark/sessionized_clickstream:same_rows_as_polars"] is False
    assert checks["spark/sessionized_clickstream:unique_ids_and_keys"] is True
    frame.write_parquet(file)  # put it back for the other tests


def test_day_by_day_equals_one_range_run(tmp_path):
    """Sessions continue across midnight whether days run one by one or together."""
    together = _landing(tmp_path / "together")
    daily = tmp_path / "daily"
    daily.mkdir()
    (daily / "landing").symlink_to(together / "landing")
    assert _run("polars_etl", together, "2024-01-01", "2024-01-02").success
    for day in ("2024-01-01", "2024-01-02"):
        assert _run("polars_etl", daily, day, day).success
    window = (START, date(2024, 1, 3))
    a = layer_store.read_layer(Paths(together).layers, "polars", "sessionized", *window)
    b = layer_store.read_layer(Paths(daily).layers, "polars", "sessionized", *window)
    assert a.height > 1000
    comparison = compare_frames(a, b)
    assert comparison.equal, comparison.summary()
    crossing = a.filter(pl.col("session_start").dt.date() < pl.col("event_date"))
    assert crossing.height > 0  # some sessions did run across midnight


@pytest.mark.spark
def test_analytics_give_the_same_answers_on_both_tables(compared, capsys):
    data, _ = compared
    result = _run("lakehouse_analytics", data)
    assert result.success
    assert _checks(result) == {"clickstream_analytics:engines_give_the_same_answers": True}
    (materialization,) = result.get_asset_materialization_events()
    metadata = materialization.materialization.metadata
    for query in ("conversion_funnel", "daily_activity", "top_countries", "bounce_rate"):
        assert "|" in metadata[query].value, query
    funnel = metadata["conversion_funnel"].value
    assert "```sql\n" in funnel  # the SQL beside its answer
    assert "PAGE_VIEW" in funnel
    assert "PURCHASE" in funnel
    # Ad-hoc SQL from the command line over the same tables.
    sql = "SELECT count(*) AS n FROM polars_events JOIN spark_events USING (event_id)"
    assert cli(["query", "--data", str(data), sql]) == 0
    assert str(_iceberg_rows(data, "polars").height) in capsys.readouterr().out


@pytest.mark.spark
def test_the_benchmark_asset_compares_the_recorded_figures(compared):
    data, _ = compared
    result = _run(BENCHMARK_JOB, data, instance=INSTANCE)
    assert result.success, result.all_events[-1]
    (materialization,) = result.get_asset_materialization_events()
    metadata = materialization.materialization.metadata
    assert metadata["window"].value == "[2024-01-01, 2024-01-04)"
    assert metadata["sources"].value == {e: "compare_engines" for e in ENGINES}
    assert all(metadata[f"{e}_seconds"].value > 0 for e in ENGINES)
    assert metadata["duckdb_over_polars"].value > 0
    assert "| sessionized |" in metadata["comparison"].value
    assert "](data:image/png;base64,iVBOR" in metadata["chart"].value  # inline on the page
    reports = data / "reports"
    assert (reports / "benchmark-graph.png").read_bytes().startswith(b"\x89PNG")
    assert "Spark/Polars | DuckDB/Polars" in (reports / "benchmark-graph.md").read_text()


@pytest.mark.spark
def test_maintenance_keeps_the_rows_and_only_the_current_snapshots(compared):
    """The demo's maintain_lakehouse run (retention 0): one snapshot per table, the same rows."""
    data, _ = compared
    before = {e: _iceberg_rows(data, e) for e in ENGINES}
    job = defs.resolve_job_def("maintain_lakehouse")
    result = job.execute_in_process(
        run_config={"ops": {"lakehouse_maintenance": {"config": {"retention_hours": 0}}}},
        resources=_resources(data), instance=dg.DagsterInstance.ephemeral(),
    )  # fmt: skip
    assert result.success
    (materialization,) = result.get_asset_materialization_events()
    metadata = materialization.materialization.metadata
    assert metadata["snapshots_after"].value == 2 * len(ENGINES)  # two tables per engine
    assert metadata["snapshots_before"].value > 2 * len(ENGINES)
    for engine, rows in before.items():
        assert compare_frames(rows, _iceberg_rows(data, engine)).equal, engine
