"""Analytical SQL over the lakehouse, in DuckDB.

The queries are the .sql files next to this module; each reads a view named `events`. DuckDB
gets the Iceberg tables through PyIceberg scans (Arrow, no copy on DuckDB's side): the DuckDB
iceberg extension would have to be downloaded, which this machine cannot do. Views
`<engine>_events` and `<engine>_rejects` are registered for every engine with a table, so
ad-hoc SQL can compare them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import duckdb
import polars as pl
from pyiceberg.catalog import Catalog

from etl_poc.lakehouse import iceberg
from etl_poc.logic.spec import ENGINES


def queries() -> dict[str, str]:
    """The analytical queries, by name (the .sql file's stem), in name order."""
    folder = resources.files("etl_poc.analytics").joinpath("sql")
    return {
        entry.name.removesuffix(".sql"): entry.read_text()
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".sql")
    }


def register_lakehouse(connection: duckdb.DuckDBPyConnection, catalog: Catalog) -> list[str]:
    """Register each engine's Iceberg tables (in `catalog`) as DuckDB views; returns the
    views' names."""
    names = []
    for engine in ENGINES:
        for layout, suffix in ((iceberg.EVENTS, "events"), (iceberg.REJECTS, "rejects")):
            rows = iceberg.read_window(catalog, engine, layout)
            if rows is not None:
                connection.register(f"{engine}_{suffix}", rows.to_arrow())
                names.append(f"{engine}_{suffix}")
    return names


@dataclass
class QueryResult:
    name: str
    by_engine: dict[str, pl.DataFrame]

    @property
    def engines_agree(self) -> bool:
        frames = list(self.by_engine.values())
        return all(frame.equals(frames[0]) for frame in frames[1:])


def run_queries(connection: duckdb.DuckDBPyConnection, engines=ENGINES) -> list[QueryResult]:
    """Every query on every engine's events table (as the view `events`)."""
    results = []
    for name, sql in queries().items():
        by_engine = {}
        for engine in engines:
            connection.execute(
                f"CREATE OR REPLACE TEMP VIEW events AS SELECT * FROM {engine}_events"
            )
            by_engine[engine] = pl.from_arrow(connection.sql(sql).to_arrow_table())
        results.append(QueryResult(name, by_engine))
    return results


def run_sql(connection: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    return pl.from_arrow(connection.sql(sql).to_arrow_table())


def read_only_session(catalog: Catalog) -> duckdb.DuckDBPyConnection:
    """A DuckDB session over the lakehouse's views for ad-hoc questions: once the views are
    registered (in memory), files and the network are out of reach (enable_external_access
    off) and the configuration is locked, so no statement can turn either back on."""
    connection = duckdb.connect()
    register_lakehouse(connection, catalog)
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")
    return connection


def run_read_only(connection: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    """One SELECT (a query, WITH included) and nothing else: several statements, or one that
    writes, attaches, copies or sets anything, is refused with the reason before it runs."""
    statements = connection.extract_statements(sql)
    if len(statements) != 1:
        raise ValueError(f"one statement at a time, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise ValueError(f"read-only: only a SELECT runs here, not {kind.name}")
    return run_sql(connection, sql)
