"""The Dagster code location: it loads, its graph is what we expect, its jobs run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from etl_poc.definitions import defs
from etl_poc.defs.jobs import CHECK_LANDING_JOB
from etl_poc.defs.landing import (
    LANDING_FILES_CHECK,
    NOT_INGESTED_CHECK,
    every_landing_file_ingested,
    landing_files_present,
)
from etl_poc.defs.partitions import daily
from etl_poc.defs.resources import DataDirectory
from etl_poc.logic.spec import ENGINES, OLTP_TABLES

# A snapshot of the whole graph, compared with ==: an accidental change shows up in review.
# Asset -> (group, kinds, daily partitions, deps).
_LAYER_DEPS = {
    "raw_clickstream": ["landing_clickstream"],
    "cleansed_clickstream": ["{e}/raw_clickstream"],
    "enriched_clickstream": ["ip_country_ranges", "{e}/cleansed_clickstream"],
    "sessionized_clickstream": ["{e}/enriched_clickstream", "{e}/sessionized_clickstream"],
    "clickstream_events": ["{e}/sessionized_clickstream"],
}
_LAYERS = sorted(_LAYER_DEPS)
_ASSET_LAYERS = list(_LAYER_DEPS)  # in pipeline order
EXPECTED_ASSETS = {
    "benchmark": ("benchmark", ["python"], False,
                  sorted(f"{e}/{layer}" for e in ENGINES for layer in _LAYERS)),
    "clickstream_analytics": ("analytics", ["duckdb", "sql"], False,
                              [f"{e}/clickstream_events" for e in sorted(ENGINES)]),
    "ip_country_ranges": ("reference", ["polars"], False, []),
    "lakehouse_maintenance": ("maintenance", ["iceberg"], False,
                              [f"{e}/clickstream_events" for e in sorted(ENGINES)]),
    "landing_clickstream": ("landing", ["csv", "parquet"], False, []),
    **{
        f"{e}/{layer}": (
            e, sorted([e, "iceberg" if layer == "clickstream_events" else "parquet"]), True,
            sorted(d.format(e=e) for d in deps),
        )
        for e in ENGINES
        for layer, deps in _LAYER_DEPS.items()
    },
    "oltp/source_database": ("oltp", ["postgres"], False, []),
    **{f"oltp/{t}_changes": ("oltp", ["debezium", "iceberg"], False, ["oltp/source_database"])
       for t in OLTP_TABLES},
    **{f"oltp/{t}": ("oltp", ["iceberg", "polars"], False, [f"oltp/{t}_changes"])
       for t in OLTP_TABLES},
    **{f"warehouse/{model}": ("warehouse", ["dbt", "duckdb"], False, sorted(deps))
       for model, deps in {
           "stg_events": ["polars/clickstream_events"],
           **{f"stg_{t}": [f"oltp/{t}"] for t in OLTP_TABLES},
           "int_order_analytics": ["warehouse/stg_order_items", "warehouse/stg_orders",
                                   "warehouse/stg_users"],
           "int_customer_metrics": ["warehouse/int_order_analytics", "warehouse/stg_events",
                                    "warehouse/stg_users"],
           "int_product_analytics": ["warehouse/stg_events", "warehouse/stg_order_items",
                                     "warehouse/stg_orders", "warehouse/stg_products"],
           "mart_user_sessions": ["warehouse/stg_events"],
           "mart_daily_business_metrics": ["warehouse/mart_user_sessions"],
           "mart_customer_tier_analytics": ["warehouse/int_customer_metrics",
                                            "warehouse/int_order_analytics"],
           "mart_product_performance": ["warehouse/int_product_analytics"],
           "mart_customer_analytics": ["warehouse/int_customer_metrics"],
       }.items()},
    **{f"speed_layer/{e}_sessionizer": ("speed_layer", ["kafka", e], False, [])
       for e in ("polars", "spark")},
    "speed_layer/speed_layer_reconciliation": (
        "speed_layer", ["clickhouse", "iceberg"], True,
        ["polars/clickstream_events", "speed_layer/polars_sessionizer",
         "speed_layer/spark_sessionizer"],
    ),
}  # fmt: skip
_QUALITY = [
    ("cleansed_clickstream", "rows_conserved"),
    ("enriched_clickstream", "public_ips_have_a_country"),
    ("sessionized_clickstream", "session_rule_holds"),
    ("sessionized_clickstream", "unique_ids_and_keys"),
    ("clickstream_events", "events_and_rejects_from_one_run"),
    ("clickstream_events", "event_ids_unique_in_table"),
]
EXPECTED_CHECKS = sorted(
    [("landing_clickstream", LANDING_FILES_CHECK), ("landing_clickstream", NOT_INGESTED_CHECK)]
    + [("clickstream_analytics", "engines_give_the_same_answers")]
    + [(f"{e}/{layer}", "same_rows_as_polars") for e in ENGINES[1:] for layer in _LAYERS]
    + [(f"{engine}/{layer}", name) for engine in ENGINES for layer, name in _QUALITY]
    + [(f"{e}/{layer}", "column_schema_change") for e in ENGINES for layer in _LAYERS]
    + [(f"oltp/{t}", "equals_source") for t in OLTP_TABLES]
    + [("warehouse/mart_daily_business_metrics", "marts_identical_across_engines")]
    + [("speed_layer/speed_layer_reconciliation", name) for name in
       ("polars_stream_matches_batch", "spark_stream_matches_batch", "streaming_engines_agree")]
)  # fmt: skip
_LINEAGE = {e: sorted(f"{e}/{layer}" for layer in _LAYERS) for e in ENGINES}
EXPECTED_JOBS = {
    CHECK_LANDING_JOB: [],
    "polars_etl": _LINEAGE["polars"],
    "spark_etl": _LINEAGE["spark"],
    "duckdb_etl": _LINEAGE["duckdb"],
    "compare_engines": sorted(["ip_country_ranges", *(a for e in ENGINES for a in _LINEAGE[e])]),
    "lakehouse_analytics": ["clickstream_analytics"],
    "oltp_cdc": sorted(a for a in EXPECTED_ASSETS if a.startswith("oltp/")),
    "build_warehouse": sorted(a for a in EXPECTED_ASSETS if a.startswith("warehouse/")),
    "bench_polars": _LINEAGE["polars"],
    "bench_spark": _LINEAGE["spark"],
    "bench_duckdb": _LINEAGE["duckdb"],
    "benchmark_report": ["benchmark"],
    "maintain_lakehouse": ["lakehouse_maintenance"],
    "observe_streams": ["speed_layer/polars_sessionizer", "speed_layer/spark_sessionizer"],
}


def _key(key) -> str:
    return "/".join(key.path)


def test_definitions_load_with_the_expected_graph():
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assets[_key(key)] = (
            node.group_name, sorted(node.kinds), node.partitions_def is not None,
            sorted(_key(parent) for parent in node.parent_keys),
        )  # fmt: skip
    assert assets == EXPECTED_ASSETS
    checks = sorted((_key(k.asset_key), k.name) for k in graph.asset_check_keys)
    # every dbt test on a model is a check of its model's asset (dagster-dbt names them)
    dbt_tests = [c for c in checks if c[0].startswith("warehouse/") and c not in EXPECTED_CHECKS]
    assert len(dbt_tests) >= 25
    assert ("warehouse/stg_orders", "relationships_stg_orders_user_id__user_id__ref_stg_users_") \
        in dbt_tests  # fmt: skip
    assert [c for c in checks if c not in dbt_tests] == EXPECTED_CHECKS
    assert [sensor.name for sensor in defs.sensors] == [
        "landing_files_changed", "declarative_automation", "killed_runs_fail",
    ]  # fmt: skip
    assert [schedule.name for schedule in defs.schedules] == [
        "compare_engines_daily", "observe_streams_every_minute",
    ]  # fmt: skip
    # Who owns each asset, its tags, what keeps it fresh or materializes it by itself, and a
    # link to its code.
    people = {
        _key(key): (
            list(graph.get(key).owners),
            {k: v for k, v in graph.get(key).tags.items() if not k.startswith("dagster/kind/")},
            graph.get(key).freshness_policy is not None,
            graph.get(key).automation_condition is not None,
            "dagster/code_references" in graph.get(key).metadata,
        )
        for key in graph.get_all_asset_keys()
    }
    assert people == {
        **{
            # landing_clickstream is external (files sources drop): no code of ours makes it.
            name: (["team:data-platform"], {}, False, name == "clickstream_analytics",
                   name != "landing_clickstream")
            for name in EXPECTED_ASSETS
            if "/" not in name
        },
        **{
            f"{e}/{asset}": (
                ["team:data-platform"], {"etl_poc/engine": e, "etl_poc/layer": layer},
                layer == "events", False, True,
            )
            for e in ENGINES
            for asset, layer in zip(_ASSET_LAYERS, ("raw", "cleansed", "enriched", "sessionized", "events"), strict=True)
        },
        **{name: (["team:data-platform"], {}, False, False, True)
           for name in EXPECTED_ASSETS if name.startswith("oltp/")},
        **{name: (["team:data-platform"], {}, False, False, True)
           for name in EXPECTED_ASSETS if name.startswith("warehouse/")},
        **{name: (["team:data-platform"], {}, False, False, True)
           for name in EXPECTED_ASSETS if name.startswith("speed_layer/")},
    }  # fmt: skip
    jobs = {
        job.name: sorted(_key(k) for k in job.asset_layer.selected_asset_keys)
        for job in defs.resolve_all_job_defs()
        if not job.name.startswith("__")
    }
    assert jobs == EXPECTED_JOBS
    partitions = {node.partitions_def for node in graph.asset_nodes if node.partitions_def}
    assert partitions == {daily}


def test_landing_check_lists_files_and_fails_on_an_empty_zone(small_landing, tmp_path):
    data_dir = small_landing.manifest_path.parent.parent
    result = landing_files_present(data_dir=DataDirectory(path=str(data_dir)))
    assert result.passed
    assert result.metadata["files"].value == 8
    assert "bulk/bulk_data_small.parquet" in result.metadata["listing"].value
    empty = landing_files_present(data_dir=DataDirectory(path=str(tmp_path)))
    assert not empty.passed
    assert every_landing_file_ingested(data_dir=DataDirectory(path=str(data_dir))).passed


def test_files_the_pipeline_cannot_ingest_are_named_and_warned_about(tmp_path):
    """x.csv.gz and y.CSV are ingested; notes.txt and z.csv.zst are not, and say so (issue
    15, defect 2: they used to be dropped with the run green)."""
    import gzip

    landing = tmp_path / "landing"
    (landing / "in").mkdir(parents=True)
    header = b"event_id,user_id,timestamp\n"
    (landing / "in" / "x.csv.gz").write_bytes(
        gzip.compress(header + b"e1,u1,2024-01-02 10:00:00\n")
    )
    (landing / "in" / "y.CSV").write_bytes(header + b"e2,u1,2024-01-02 11:00:00\n")
    (landing / "in" / "notes.txt").write_text("not data")
    (landing / "z.csv.zst").write_bytes(b"(compressed)")
    (landing / "manifest_small.json").write_text("{}")  # a generator's manifest is expected
    data_dir = DataDirectory(path=str(tmp_path))
    present = landing_files_present(data_dir=data_dir)
    assert present.metadata["files"].value == 2
    assert "in/x.csv.gz | csv.gz" in present.metadata["listing"].value
    warned = every_landing_file_ingested(data_dir=data_dir)
    assert not warned.passed
    assert warned.severity == dg.AssetCheckSeverity.WARN
    assert warned.metadata["not_ingested"].value == 2
    assert "`in/notes.txt`" in warned.metadata["files"].value
    assert "`z.csv.zst`" in warned.metadata["files"].value


def _dagster_cli(tmp_path: Path, generate: list[str], job: list[str], **env: str):
    """Generate landing data, then `dg launch` in a fresh process with its own instance;
    returns the finished process and the instance."""
    subprocess.run(
        [sys.executable, "-m", "etl_poc.cli", "generate", *generate, "--no-progress",
         "--out", str(tmp_path / "data" / "landing")],
        check=True, capture_output=True,
    )  # fmt: skip
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        (Path(__file__).parents[1] / "dagster_home" / "dagster.yaml").read_text()
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ETL_POC_DATA_DIR": str(tmp_path / "data"),
        **env,
    }
    run = subprocess.run(
        [str(Path(sys.executable).with_name("dg")), "launch", "-m", "etl_poc.definitions", *job],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return run, dg.DagsterInstance.from_config(str(home))


@pytest.mark.spark
def test_compare_engines_runs_from_the_dagster_cli(tmp_path):
    """What the README shows: `dg launch --partition-range`, in a fresh process (its own
    Spark session), every check evaluated and passing."""
    run, instance = _dagster_cli(
        tmp_path,
        ["--events", "600", "--days", "2", "--incremental-days", "1", "--formats", "parquet"],
        ["--job", "compare_engines", "--partition-range", "2024-01-01...2024-01-02"],
        ETL_POC_SPARK_MASTER="local[1]",
        ETL_POC_SPARK_DRIVER_MEMORY="2g",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (record,) = instance.get_run_records()
    assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    for layer in _LAYERS:
        evaluation = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(dg.AssetKey(["spark", layer]), "same_rows_as_polars")
        )
        assert evaluation is not None, layer
        assert evaluation.event.dagster_event.event_specific_data.passed, layer


def test_check_job_runs_from_the_dagster_cli(tmp_path):
    """`dg launch --job`, in a fresh process."""
    run, instance = _dagster_cli(tmp_path, ["--events", "200"], ["--job", CHECK_LANDING_JOB])
    assert run.returncode == 0, run.stderr[-2000:]
    (record,) = instance.get_run_records()
    assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    evaluation = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey("landing_clickstream"), LANDING_FILES_CHECK)
    )
    assert evaluation is not None


@pytest.mark.parametrize("config", ["dagster_home/dagster.yaml", "docker/dagster.yaml"])
def test_both_instances_monitor_their_runs(config, tmp_path, monkeypatch):
    """A run stuck starting, cancelling or running past its ceiling is ended by the daemon
    (issue 15, defect 6)."""
    import yaml

    root = Path(__file__).parents[1]
    settings = yaml.safe_load((root / config).read_text())
    monitoring = settings["run_monitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["max_runtime_seconds"] <= 24 * 3600
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump({"run_monitoring": monitoring}))
    assert dg.DagsterInstance.from_config(str(tmp_path)).run_monitoring_enabled


def test_runs_writing_an_engine_queue_one_at_a_time():
    """Jobs that write an engine's windows carry its tag, and both instances start one run per
    tag at a time (issue 15, defect 7: Dagster's limits on top of the day locks)."""
    from pathlib import Path

    import yaml

    tagged = {
        job.name: sorted(job.tags) for job in defs.jobs if any("writes_" in t for t in job.tags)
    }
    assert tagged == {
        **{job: [f"etl_poc/writes_{e}"] for e in ENGINES for job in (f"{e}_etl", f"bench_{e}")},
        "compare_engines": sorted(f"etl_poc/writes_{e}" for e in ENGINES),
    }
    root = Path(__file__).resolve().parents[1]
    for instance in ("dagster_home/dagster.yaml", "docker/dagster.yaml"):
        config = yaml.safe_load((root / instance).read_text())["run_coordinator"]["config"]
        limits = {item["key"]: item["limit"] for item in config["tag_concurrency_limits"]}
        assert limits == {f"etl_poc/writes_{e}": 1 for e in ENGINES}, instance
