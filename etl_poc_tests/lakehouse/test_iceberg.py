"""The Iceberg tables: a write replaces exactly its window, atomically, and writers in
several processes at once all land."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from etl_poc.lakehouse import iceberg


def _events(day: date, n: int, tag: str) -> pl.DataFrame:
    ts = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return pl.DataFrame(
        {
            **{c: [f"{tag}-{i}" for i in range(n)] for c in iceberg.EVENT_COLUMNS},
            "event_ts": [ts] * n,
            "session_start": [ts] * n,
            "event_date": [day] * n,
            "event_seq": list(range(1, n + 1)),
        }
    ).select(iceberg.EVENT_COLUMNS)


def _rows(warehouse: Path) -> pl.DataFrame:
    catalog = iceberg.open_catalog(warehouse)
    return pl.from_arrow(catalog.load_table("polars.clickstream_events").scan().to_arrow())


def test_a_write_replaces_exactly_its_window(tmp_path):
    catalog = iceberg.open_catalog(tmp_path)
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(3)]
    everything = pl.concat([_events(d, 4, "first") for d in days])
    props = {"dagster.run_id": "run-1"}
    iceberg.replace_window(catalog, "polars", iceberg.EVENTS, everything.to_arrow(), days[0],
                           days[-1] + timedelta(days=1), props)  # fmt: skip
    # The middle day again, with other rows: only that day changes.
    result = iceberg.replace_window(
        catalog, "polars", iceberg.EVENTS, _events(days[1], 2, "second").to_arrow(),
        days[1], days[2], {"dagster.run_id": "run-2"},
    )  # fmt: skip
    rows = _rows(tmp_path)
    per_day = dict(rows.group_by("event_date").len().iter_rows())
    assert per_day == {days[0]: 4, days[1]: 2, days[2]: 4}
    assert rows.filter(pl.col("event_date") == days[1])["event_id"].str.starts_with("second").all()
    assert result["summary"]["dagster.run_id"] == "run-2"
    # The same write again: nothing duplicated.
    iceberg.replace_window(catalog, "polars", iceberg.EVENTS,
                           _events(days[1], 2, "second").to_arrow(), days[1], days[2], props)  # fmt: skip
    assert _rows(tmp_path).height == 10


def _writer(warehouse: str, day: str, rounds: int) -> None:
    catalog = iceberg.open_catalog(Path(warehouse))
    start = date.fromisoformat(day)
    for i in range(rounds):
        rows = _events(start, 3 + i, f"{day}-{i}").to_arrow()
        iceberg.replace_window(catalog, "polars", iceberg.EVENTS, rows, start,
                               start + timedelta(days=1), {"round": str(i)})  # fmt: skip


def test_writers_in_several_processes_all_land(tmp_path):
    """Two engines' runs commit to the SQLite catalog at the same time: every commit lands
    (WAL, busy timeout, retry of a lost race on the re-read table)."""
    iceberg.table_for(iceberg.open_catalog(tmp_path), "polars", iceberg.EVENTS)
    days = ["2024-01-01", "2024-01-02", "2024-01-03"]
    rounds = 4
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(str(tmp_path), d, rounds)) for d in days]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
        assert writer.exitcode == 0
    per_day = dict(_rows(tmp_path).group_by("event_date").len().iter_rows())
    assert per_day == {date.fromisoformat(d): 3 + rounds - 1 for d in days}
