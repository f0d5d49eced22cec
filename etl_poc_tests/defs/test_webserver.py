"""Dagster's UI serves the code location on loopback: its GraphQL API lists the assets and
their checks, as a user browsing lineage would see them."""

from __future__ import annotations

import json
import shutil
import socket
import urllib.request
from pathlib import Path

import pytest

from etl_poc.dagster_service import DagsterService
from etl_poc.definitions import defs
from etl_poc_tests.test_defs import EXPECTED_ASSETS, EXPECTED_CHECKS

QUERY = """
{
  assetNodes {
    assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  }
}
"""


def _post(url: str, query: str) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    """The webserver alone (no daemon) over an empty instance, as `make ui` serves it."""
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(Path(__file__).parents[2] / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {"ETL_POC_DATA_DIR": str(home / "data")}
    with DagsterService(home, env, home / "webserver.log", daemon=False) as service:
        yield service.url


def test_the_ui_lists_every_asset_and_check(webserver):
    answer = _post(f"{webserver}/graphql", QUERY)
    assert "errors" not in answer, answer
    nodes = answer["data"]["assetNodes"]
    assert sorted("/".join(n["assetKey"]["path"]) for n in nodes) == sorted(EXPECTED_ASSETS)
    checks = sorted(
        ("/".join(n["assetKey"]["path"]), check["name"])
        for n in nodes
        for check in n["assetChecksOrError"].get("checks", [])
    )
    # the checks we write, as test_defs pins them, and every dbt test as its model's check
    graph = defs.resolve_asset_graph()
    defined = sorted(("/".join(k.asset_key.path), k.name) for k in graph.asset_check_keys)
    assert checks == defined
    assert set(EXPECTED_CHECKS) <= set(checks)
    assert len([c for c in checks if c not in EXPECTED_CHECKS]) >= 25


def test_the_ui_listens_on_loopback_only(webserver):
    port = int(webserver.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # UDP: picks the outgoing interface, sends nothing
            own_address = probe.getsockname()[0]
        except OSError:
            own_address = "127.0.0.1"
    if own_address.startswith("127."):
        pytest.skip("this host has no address besides loopback to try")
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection((own_address, port), timeout=3),
    ):
        pass
