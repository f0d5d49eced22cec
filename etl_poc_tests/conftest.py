"""Shared fixtures: generated landing zones, made once per test session; one Spark session;
fresh PostgreSQL databases."""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from etl_poc.generate import GeneratorConfig, generate
from etl_poc.generate.landing import GenerationResult

SMALL_EVENTS = 100_000  # the `small` size: the figures the README quotes come from it


@pytest.fixture(scope="session")
def small_landing(tmp_path_factory) -> GenerationResult:
    """The `small` size in both formats, generated in this process, at <data>/landing."""
    out = tmp_path_factory.mktemp("data") / "landing"
    return generate(GeneratorConfig.for_size("small", out_dir=out, workers=1, progress=False))


def landing_file(result: GenerationResult, entry: dict, fmt: str) -> Path:
    return result.manifest_path.parent / entry["paths"][fmt]


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole test run: one core, no UI, UTC."""
    from pyspark.sql import SparkSession

    # Python workers the JVM starts outside a task (a Python data source's) take this Python.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[1]")
        .appName("etl-poc-tests")
        .config("spark.driver.memory", "2g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


# --- PostgreSQL -------------------------------------------------------------------------------

POSTGRES_URL_ENV = "ETL_POC_TEST_POSTGRES_URL"
POSTGRES_DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REQUIRE_POSTGRES_ENV = "ETL_POC_REQUIRE_POSTGRES"


@dataclass(frozen=True)
class PostgresDatabase:
    host: str
    port: int
    user: str
    password: str
    name: str

    @property
    def url(self) -> str:
        """A SQLAlchemy URL, with the driver that is installed (psycopg2)."""
        from sqlalchemy.engine import URL

        return URL.create(
            "postgresql+psycopg2", self.user, self.password or None, self.host, self.port,
            self.name,
        ).render_as_string(hide_password=False)  # fmt: skip


@pytest.fixture(scope="session")
def postgres_server():
    """A connection to the PostgreSQL server the server-backed tests use: $ETL_POC_TEST_POSTGRES_URL
    (default postgresql://postgres@127.0.0.1:5432/postgres, a user that may create databases).
    Skips with the reason when none answers, or fails when ETL_POC_REQUIRE_POSTGRES=1 (CI)."""
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(os.environ.get(POSTGRES_URL_ENV, POSTGRES_DEFAULT_URL))
    try:
        connection = psycopg2.connect(
            host=url.host, port=url.port or 5432, user=url.username, password=url.password or "",
            dbname=url.database or "postgres", connect_timeout=5,
        )  # fmt: skip
    except psycopg2.OperationalError as error:
        message = (
            f"no PostgreSQL server answers at {url.render_as_string()} "
            f"({str(error).strip().splitlines()[0]}); set {POSTGRES_URL_ENV} to one"
        )
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRE_POSTGRES_ENV}=1: the server is required)")
        pytest.skip(message)
    connection.autocommit = True
    yield connection, url
    connection.close()


@pytest.fixture
def postgres_database(postgres_server):
    """Makes empty databases on the test server, dropped (with their connections) after the
    test: postgres_database("dagster") -> PostgresDatabase."""
    connection, url = postgres_server
    made: list[str] = []

    def make(purpose: str) -> PostgresDatabase:
        name = f"etl_poc_test_{purpose}_{uuid.uuid4().hex[:10]}"
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return PostgresDatabase(url.host, url.port or 5432, url.username, url.password or "", name)

    yield make
    with connection.cursor() as cursor:
        for name in made:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
