"""Dagster's UI serves the code location on loopback: its GraphQL API lists the assets and
their checks, as a user browsing lineage would see them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from etl_poc_tests.test_defs import EXPECTED_ASSETS, EXPECTED_CHECKS

QUERY = """
{
  assetNodes {
    assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text(
        (Path(__file__).parents[2] / "dagster_home" / "dagster.yaml").read_text()
    )
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "ETL_POC_DATA_DIR": str(home / "data")}
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-m", "etl_poc.definitions",
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None:
                pytest.fail(f"dagster-webserver exited: {process.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("dagster-webserver did not answer within 120 s")
            time.sleep(1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


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
    assert checks == EXPECTED_CHECKS


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
