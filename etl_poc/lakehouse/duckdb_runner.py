"""The layers on DuckDB (lakehouse.runner says what every runner has): each window read from
and written to Parquet by DuckDB itself (read_parquet, a partitioned COPY), worked whole in
one in-process database that spills what does not fit to disk, and counted by DuckDB.

Landing CSV files are read by the Polars reader of landing_readers (RFC 4180, the quote-parity
pass, U+FFFD for bytes that are not UTF-8: one reader for one contract) and handed to DuckDB
as Arrow; Parquet landing files DuckDB reads itself. The Iceberg data files are written by
Polars' writer from DuckDB's Arrow result (DuckDB's COPY cannot write required columns).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property

import duckdb
import polars as pl

from etl_poc.lakehouse import iceberg, layer_store
from etl_poc.lakehouse.landing_readers import duckdb_read_landing
from etl_poc.lakehouse.paths import Paths
from etl_poc.lakehouse.runner import (
    ICEBERG_LAYERS,
    PREVIEW_ROWS,
    LayerResult,
    RunnerBase,
    earlier_event_id_files,
    empty_window,
    iceberg_result,
    landing_files,
    no_raw_rows,
    nothing_for,
    snapshot_properties,
)
from etl_poc.logic import duckdb_engine as rules
from etl_poc.reference.ip_ranges import IpRangeTable
from etl_poc.settings import DEFAULT_POLARS_CHUNK_ROWS, Settings

ENGINE = "duckdb"


@dataclass(frozen=True)
class DuckDBRuntime:
    """How the runner's database works: its threads (0: one per core, DuckDB's default) and
    memory limit (empty: DuckDB's default, 80 % of RAM), beyond which it spills to disk."""

    threads: int = 0
    memory_limit: str = ""

    def __post_init__(self):
        if self.threads < 0:
            raise ValueError(f"DuckDB threads must be 0 (every core) or more, got {self.threads}")


def start_runtime(settings: Settings) -> DuckDBRuntime:
    """The runtime the settings describe (ETL_POC_DUCKDB_THREADS, ETL_POC_DUCKDB_MEMORY_LIMIT)."""
    return DuckDBRuntime(settings.duckdb_threads, settings.duckdb_memory_limit)


def stop_runtime(runtime: DuckDBRuntime) -> None:
    """Nothing to stop: each runner's database lives in its process and closes with it."""


def _one(relation, aggregate: str):
    """One aggregate of a relation (DuckDB counts a Parquet window from its footers)."""
    return relation.aggregate(aggregate).fetchall()[0][0]


class Runner(RunnerBase):
    engine = ENGINE

    def __init__(
        self,
        paths: Paths,
        start_date: date,
        processed_at: datetime,
        runtime: DuckDBRuntime | None = None,
        ip_ranges: IpRangeTable | Callable[[], IpRangeTable] | None = None,
    ):
        super().__init__(paths, start_date, processed_at, ip_ranges)
        self.runtime = runtime or DuckDBRuntime()

    @cached_property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """An in-memory database, its spill files under the data directory. Without the ICU
        extension (not loaded here: it is downloaded, not in the wheel) DuckDB casts between
        TIMESTAMP and TIMESTAMPTZ at UTC, which is what the rules' naive UTC timestamps need."""
        config = {"temp_directory": str(self.paths.data / ".duckdb_tmp")}
        if self.runtime.threads:
            config["threads"] = self.runtime.threads
        if self.runtime.memory_limit:
            config["memory_limit"] = self.runtime.memory_limit
        return duckdb.connect(config=config)

    def _stored(self, stored: str, start: date, end: date):
        """A window DuckDB wrote, or None."""
        return layer_store.duckdb_read(
            self.connection, self.paths.layers, ENGINE, stored, start, end
        )

    def _read(self, stored: str, start: date, end: date):
        relation = self._stored(stored, start, end)
        if relation is None:
            raise nothing_for(ENGINE, stored, start, end)
        return relation

    def _write(self, relation, stored: str, start: date, end: date):
        """Write the window, then read it back: (rows, preview, the written relation)."""
        layer_store.duckdb_write(relation, self.paths.layers, ENGINE, stored, start, end)
        written = self._stored(stored, start, end)
        if written is None:
            return 0, pl.DataFrame(), None
        rows = _one(written, "count(*)")
        return rows, written.limit(PREVIEW_ROWS).pl(), written

    def raw(self, start: date, end: date) -> LayerResult:
        files, read, details = landing_files(self.paths, start, end, self.start_date)
        if not files:
            return no_raw_rows(self.paths, ENGINE, start, end, read, details)
        landing = duckdb_read_landing(self.connection, files, self.paths.landing)
        rows, shown, _ = self._write(
            rules.raw(landing, start=start, end=end, **self._when), "raw", start, end
        )
        return LayerResult(rows, shown, read, details)

    def cleansed(self, start: date, end: date) -> LayerResult:
        zero = {"raw_rows": 0, "rejected_rows": 0, "duplicates_removed": 0}
        if empty := empty_window(self.paths, ENGINE, "cleansed", start, end, zero):
            return empty
        raw_rows = self._read("raw", start, end)
        earlier = None
        if files := earlier_event_id_files(self.paths, start):
            ids = layer_store.duckdb_scan(self.connection, files)
            earlier = rules.earlier_copies(ids, before=start, **self._when)
        clean, rejects = rules.cleansed(raw_rows, earlier)
        rejected, _, _ = self._write(rejects, "rejects", start, end)
        rows, shown, _ = self._write(clean, "cleansed", start, end)
        raw_count = _one(raw_rows, "count(*)")
        counts = {
            "raw_rows": raw_count,
            "rejected_rows": rejected,
            "duplicates_removed": raw_count - rejected - rows,
        }
        return LayerResult(rows, shown, counts)

    def enriched(self, start: date, end: date) -> LayerResult:
        if empty := empty_window(self.paths, ENGINE, "enriched", start, end, {}):
            return empty
        table = self.ip_ranges
        ranges = rules.prepare_ranges(
            self.connection.from_arrow(table.ipv4.to_arrow()),
            self.connection.from_arrow(table.ipv6.to_arrow()),
        )
        enriched = rules.enriched(self._read("cleansed", start, end), ranges)
        rows, shown, written = self._write(enriched, "enriched", start, end)
        status = {}
        if written is not None:
            status = dict(written.aggregate("ip_status, count(*)", "ip_status").fetchall())
        return LayerResult(
            rows,
            shown,
            {f"ip_{name}": int(count) for name, count in status.items()},
            {"ip_ranges": table.info.as_dict()},
        )

    def sessionized(self, start: date, end: date) -> LayerResult:
        if empty := empty_window(self.paths, ENGINE, "sessionized", start, end, {"sessions": 0}):
            return empty
        before = start - timedelta(days=1)
        previous = self._stored("sessionized", before, start)
        events = self._read("enriched", start, end)
        rows, shown, written = self._write(
            rules.sessionized(events, previous), "sessionized", start, end
        )
        sessions = 0
        if written is not None:
            sessions = _one(written, "count(DISTINCT session_id)")
        return LayerResult(
            rows,
            shown,
            {"sessions": sessions},
            {"context_day": before.isoformat() if previous is not None else None},
        )

    def events(self, start: date, end: date, run_id: str, catalog) -> LayerResult:
        """The sessionized and rejects windows into <engine>.clickstream_*: DuckDB reads each
        a few days at a time, Polars' writer writes the tables' data files from its Arrow
        result (iceberg.data_files) and PyIceberg commits them, each window replaced in one
        transaction."""
        commits = {}
        for stored, layout in ICEBERG_LAYERS:
            table = iceberg.table_for(catalog, ENGINE, layout)
            chunks = layer_store.day_chunks(
                self.paths.layers, ENGINE, stored, start, end, DEFAULT_POLARS_CHUNK_ROWS
            )
            pieces = (
                pl.from_arrow(relation.to_arrow_table()).with_columns(
                    pl.col(pl.Datetime).dt.replace_time_zone("UTC")
                )
                for a, b in chunks
                if (relation := self._stored(stored, a, b)) is not None
            )
            files, rows = iceberg.data_files(pieces, table, layout, ENGINE)
            commit = iceberg.replace_window_with_files(
                catalog, ENGINE, layout, files, start, end, snapshot_properties(ENGINE, run_id)
            )
            commits[layout.name] = (rows, commit)
        return iceberg_result(catalog, ENGINE, start, end, commits)
