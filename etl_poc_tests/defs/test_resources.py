"""The resources: the catalog URL (a password inside, in the containers) reaches Dagster as an
EnvVar, so the UI shows its variable's name and never the URL (issue 15, security)."""

from __future__ import annotations

import dagster as dg

from etl_poc.defs import resources
from etl_poc.settings import Settings

URL = "postgresql+psycopg2://etl:s3cret@127.0.0.1:5432/iceberg"


def test_the_catalog_url_is_passed_by_name_and_read_when_a_run_uses_it(monkeypatch, tmp_path):
    monkeypatch.setenv("ETL_POC_CATALOG_URI", URL)
    monkeypatch.setattr(resources, "settings", lambda: Settings(catalog_uri=URL))
    data_dir = resources.DataDirectory(path=str(tmp_path))
    lakehouse = resources.resources_for(data_dir)["lakehouse"]
    assert lakehouse.uri == dg.EnvVar("ETL_POC_CATALOG_URI")
    assert "s3cret" not in repr(lakehouse)
    seen = {}

    @dg.asset
    def probe(lakehouse: resources.IcebergCatalog) -> None:
        seen["uri"] = lakehouse.uri

    # What a run gets: the value, read from the environment then.
    assert dg.materialize([probe], resources={"lakehouse": lakehouse}).success
    assert seen["uri"] == URL


def test_without_a_catalog_url_the_embedded_catalog_is_used(monkeypatch, tmp_path):
    monkeypatch.setattr(resources, "settings", lambda: Settings())
    lakehouse = resources.resources_for(resources.DataDirectory(path=str(tmp_path)))["lakehouse"]
    assert lakehouse.uri == ""
    assert not lakehouse.exists()  # no SQLite file yet


def test_an_unreachable_catalog_fails_the_run_before_any_layer_is_rewritten(monkeypatch, tmp_path):
    """Issue 15, faults: the catalog server down. The run fails at its first step, naming the
    URL with its password masked, and no layer of the window is touched."""
    from etl_poc.cli import main as cli
    from etl_poc.dagster_service import free_port
    from etl_poc.definitions import defs
    from etl_poc.defs.tags import range_tags

    port = free_port()  # a port nothing listens on
    url = f"postgresql+psycopg2://etl:s3cr3t-pw@127.0.0.1:{port}/iceberg"
    monkeypatch.setenv("ETL_POC_CATALOG_URI", url)
    monkeypatch.setattr(resources, "settings", lambda: Settings(catalog_uri=url))
    cli(["generate", "--events", "500", "--formats", "parquet", "--days", "2",
         "--incremental-days", "0", "--out", str(tmp_path / "landing"), "--no-progress"])  # fmt: skip
    result = defs.resolve_job_def("polars_etl").execute_in_process(
        tags=range_tags("2024-01-01", "2024-01-02"),
        resources=resources.resources_for(resources.DataDirectory(path=str(tmp_path))),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "polars_lineage"  # the engine's layers are one multi-asset
    message = failure.step_failure_data.error.to_string()
    assert f"postgresql+psycopg2://etl:***@127.0.0.1:{port}/iceberg cannot be reached" in message
    assert "s3cr3t-pw" not in message
    assert not (tmp_path / "layers" / "polars").exists()
