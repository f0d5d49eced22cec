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
