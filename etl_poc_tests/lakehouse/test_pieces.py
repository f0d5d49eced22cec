"""A window worked in pieces (days, landing files, parts of a large file) gives exactly the
rows of the whole window at once, in every layer and in the Iceberg tables, on either of
Polars' engines; and the pieces bound the rows held at once."""

from __future__ import annotations

import contextlib
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from etl_poc.lakehouse import iceberg, layer_store, polars_runner
from etl_poc.lakehouse.paths import Paths
from etl_poc.lakehouse.runner import detached, preview
from etl_poc.logic.compare import compare_frames

START, END = date(2024, 1, 1), date(2024, 1, 10)
PROCESSED_AT = datetime(2024, 3, 1, tzinfo=UTC)
LAYERS = ("raw", "rejects", "cleansed", "enriched", "sessionized")


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    """6 bulk days in one file and 3 daily files, plus replays of two events on another day
    than their first copy (one later, one earlier): a duplicate across pieces each way."""
    from etl_poc.cli import main as cli

    root = tmp_path_factory.mktemp("pieces") / "landing"
    cli(["generate", "--events", "20000", "--formats", "parquet", "--days", "6",
         "--incremental-days", "3", "--out", str(root), "--no-progress"])  # fmt: skip
    bulk = pl.read_parquet(next(root.glob("bulk/*.parquet")))
    day = pl.col("timestamp").str.slice(0, 10)
    later = (
        bulk.filter(day == "2024-01-02")
        .head(1)
        .with_columns(pl.col("timestamp").str.replace("2024-01-02", "2024-01-05"))
    )
    earlier = (
        bulk.filter(day == "2024-01-05")
        .head(1)
        .with_columns(pl.col("timestamp").str.replace("2024-01-05", "2024-01-01"))
    )
    (root / "replays").mkdir()
    pl.concat([later, earlier]).write_parquet(root / "replays" / "replayed.parquet")
    return root


def _run(landing: Path, data: Path, chunk_rows: int, engine: str) -> dict:
    data.mkdir()
    shutil.copytree(landing, data / "landing")
    runtime = polars_runner.PolarsRuntime(chunk_rows=chunk_rows, collect_engine=engine)
    runner = polars_runner.Runner(Paths(data), START, PROCESSED_AT, runtime)
    results = {layer: getattr(runner, layer)(START, END) for layer in LAYERS if layer != "rejects"}
    catalog = iceberg.open_catalog(data / "warehouse")
    results["events"] = runner.events(START, END, "test", catalog)
    return results


def _tables(data: Path) -> dict[str, pl.DataFrame]:
    return _tables_of(data, "polars")


def _tables_of(data: Path, engine: str) -> dict[str, pl.DataFrame]:
    layers = Paths(data).layers
    frames = {layer: layer_store.read_layer(layers, engine, layer, START, END) for layer in LAYERS}
    catalog = iceberg.open_catalog(Paths(data).warehouse)
    for layout in (iceberg.EVENTS, iceberg.REJECTS):
        frames[layout.name] = iceberg.read_window(catalog, engine, layout)
    return frames


def _assert_same(whole, data: Path, results: dict) -> None:
    """Every layer and table of `data` holds the rows of the whole window at once, and each
    layer's result counts what that one counted (but its pieces)."""
    expected_results, expected = whole
    tables = _tables(data)
    for name, frame in expected.items():
        comparison = compare_frames(frame, tables[name])
        assert comparison.equal, f"{name}: {comparison.summary()}"
    for layer in ("cleansed", "enriched", "sessionized", "events"):
        mine = {k: v for k, v in results[layer].counts.items() if k != "pieces"}
        theirs = {k: v for k, v in expected_results[layer].counts.items() if k != "pieces"}
        assert mine == theirs, layer
        assert results[layer].rows == expected_results[layer].rows


@pytest.fixture(scope="module")
def whole(landing, tmp_path_factory):
    data = tmp_path_factory.mktemp("whole") / "data"
    return _run(landing, data, 0, "in-memory"), _tables(data)


@pytest.mark.parametrize("engine", ["in-memory", "streaming"])
def test_pieces_give_the_rows_of_the_whole_window(whole, landing, tmp_path, engine):
    expected_results, expected = whole
    results = _run(landing, tmp_path / "data", 3000, engine)
    assert results["raw"].counts["pieces"] > 5  # the bulk file was read in parts
    assert results["cleansed"].counts["pieces"] > 3
    assert all(frame.height > 0 for frame in expected.values())
    _assert_same(whole, tmp_path / "data", results)
    # Each replay lands on another day than its first copy, and only the earlier copy stays.
    cleansed = expected["cleansed"]
    assert cleansed["event_id"].n_unique() == cleansed.height
    assert expected_results["cleansed"].counts["duplicates_removed"] >= 2
    # A session running across a piece's first midnight is one session, counted once.
    sessions = expected["sessionized"]
    crossing = sessions.filter(pl.col("session_start").dt.date() < pl.col("event_date"))
    assert crossing.height > 0


@pytest.mark.spark
def test_spark_works_the_window_whole_and_needs_no_pieces_rule(whole, landing, tmp_path, spark):
    """The pieces rule of the spec (a later piece drops the ids an earlier one kept) exists
    for Polars alone: Spark works the window whole, and without that rule it gives the rows
    of Polars' pieces, replays across days included."""
    from etl_poc.lakehouse import spark_runner

    _, expected = whole
    data = tmp_path / "data"
    data.mkdir()
    shutil.copytree(landing, data / "landing")
    runner = spark_runner.Runner(Paths(data), START, PROCESSED_AT, spark)
    for layer in ("raw", "cleansed", "enriched", "sessionized"):
        getattr(runner, layer)(START, END)
    runner.events(START, END, "test", iceberg.open_catalog(Paths(data).warehouse))
    tables = _tables_of(data, "spark")
    for name, frame in expected.items():
        comparison = compare_frames(frame, tables[name])
        assert comparison.equal, f"{name}: {comparison.summary()}"


def _run_chain(landing, data, chunk_rows, monkeypatch, prepare=(), chain=None) -> tuple:
    """`prepare` run one layer at a time, then `chain` (default: every layer) in one
    Runner.run; the stored layers that run read back, and its results."""
    data.mkdir()
    shutil.copytree(landing, data / "landing")
    runtime = polars_runner.PolarsRuntime(chunk_rows=chunk_rows)
    runner = polars_runner.Runner(Paths(data), START, PROCESSED_AT, runtime)
    catalog = iceberg.open_catalog(data / "warehouse")
    for layer in prepare:
        dict(runner.run([layer], START, END, "test", catalog))
    read_back = []
    real_read = layer_store.polars_read

    def counting_read(root, engine, stored, start, end):
        read_back.append((stored, start, end))
        return real_read(root, engine, stored, start, end)

    monkeypatch.setattr(layer_store, "polars_read", counting_read)
    names = chain or ("raw", "cleansed", "enriched", "sessionized", "events")
    phases: list[str] = []

    def phase(name):
        phases.append(name)
        return contextlib.nullcontext()

    results = dict(runner.run(names, START, END, "test", catalog, phase))
    monkeypatch.setattr(layer_store, "polars_read", real_read)
    return results, read_back, phases


@pytest.mark.parametrize("chunk_rows", [0, 3000])
def test_a_fused_chain_gives_the_rows_of_layer_by_layer_and_reads_nothing_back(
    whole, landing, tmp_path, chunk_rows, monkeypatch
):
    """All five layers in one Runner.run: the same rows in every layer and table, the same
    counts, and no layer read back but the raw layer when it was written in pieces (and the
    day before the window, which an earlier run wrote)."""
    results, read_back, phases = _run_chain(landing, tmp_path / "data", chunk_rows, monkeypatch)
    assert list(results) == ["raw", "cleansed", "enriched", "sessionized", "events"]
    _assert_same(whole, tmp_path / "data", results)
    before = (date(2023, 12, 31), START)
    if chunk_rows:  # the raw layer's pieces are landing files: read back by day
        assert {stored for stored, *_ in read_back} == {"raw", "sessionized"}
        assert [w for s, *w in read_back if s == "sessionized"] == [list(before)]
        assert results["cleansed"].in_memory == frozenset()
        assert results["cleansed"].counts["pieces"] > 3
    else:  # one piece: the raw rows handed over too
        assert read_back == [("sessionized", *before)]
        assert results["cleansed"].in_memory == {"raw"}
    assert results["enriched"].in_memory == {"cleansed"}
    assert results["events"].in_memory == {"sessionized", "rejects"}
    # The layers take turns, a piece at a time: every stretch is told to its layer.
    assert set(phases) == {"raw", "cleansed", "enriched", "sessionized", "events"}
    assert phases.count("cleansed") >= results["cleansed"].counts["pieces"]


@pytest.mark.parametrize(
    ("prepare", "chain"),
    [
        (("raw", "cleansed"), ("enriched", "sessionized", "events")),  # a chain's tail
        (("raw", "cleansed", "enriched"), ("sessionized", "events")),  # rejects read stored
        (("raw", "cleansed", "enriched", "sessionized"), ("events",)),  # one layer alone
        (("raw", "enriched"), ("cleansed", "sessionized", "events")),  # not contiguous
    ],
)
def test_any_subset_of_layers_gives_the_same_rows(
    whole, landing, tmp_path, monkeypatch, prepare, chain
):
    _, expected = whole
    if prepare == ("raw", "enriched"):  # enriched needs cleansed: build it, then redo it
        prepare = ("raw", "cleansed", "enriched")
    results, read_back, _ = _run_chain(
        landing, tmp_path / "data", 3000, monkeypatch, prepare, chain
    )
    assert list(results) == list(chain)
    tables = _tables(tmp_path / "data")
    for name, frame in expected.items():
        comparison = compare_frames(frame, tables[name])
        assert comparison.equal, f"{name}: {comparison.summary()}"
    if chain == ("sessionized", "events"):
        assert results["events"].in_memory == {"sessionized"}
        assert "rejects" in {stored for stored, *_ in read_back}
    if chain == ("cleansed", "sessionized", "events"):  # one after another, each read back
        assert all(not result.in_memory for result in results.values())


def test_a_piece_holds_at_most_its_rows(landing, tmp_path):
    _run(landing, tmp_path / "data", 3000, "in-memory")
    layers = tmp_path / "data" / "layers"
    for first, stop in layer_store.day_chunks(layers, "polars", "cleansed", START, END, 3000):
        rows, _ = layer_store.window_size(layers, "polars", "cleansed", first, stop)
        single_day = (stop - first).days == 1
        assert rows <= 3000 or single_day


def test_in_pieces_keeps_order_and_bounds():
    assert layer_store.in_pieces(list("abcde"), [2, 2, 2, 5, 0], 4) == [
        ["a", "b"], ["c"], ["d", "e"]
    ]  # fmt: skip
    assert layer_store.in_pieces(list("abc"), [0, 0, 9], 4) == [["a", "b", "c"]]
    assert layer_store.in_pieces(list("abc"), [1, 1, 1], 0) == [["a", "b", "c"]]
    assert layer_store.in_pieces([], [], 4) == []


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="streaming"):
        polars_runner.PolarsRuntime(collect_engine="gpu")
    with pytest.raises(ValueError, match="chunk_rows"):
        polars_runner.PolarsRuntime(chunk_rows=-1)


def test_a_piece_s_preview_does_not_keep_the_piece_in_memory():
    """`head` is a view on the whole frame's buffers: a preview kept per piece must be a copy,
    or a window's pieces all stay in memory (seen at 100M events: 15 GiB instead of ~4)."""
    import gc

    import psutil

    process = psutil.Process()
    before = process.memory_info().rss
    previews = []
    for _ in range(6):  # 6 pieces of 256 MB each
        piece = pl.DataFrame({"a": pl.arange(0, 16_000_000, eager=True)}).with_columns(
            b=pl.col("a") * 2
        )
        previews.append(preview(piece))
        del piece
        gc.collect()
    grown = process.memory_info().rss - before
    assert previews[0].height == 5
    assert grown < 800 * 2**20, f"RSS grew {grown / 2**20:.0f} MiB"


def _buffer_bytes(frame: pl.DataFrame) -> int:
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    return sum(
        buffer.size
        for column in table.columns
        for chunk in column.chunks
        for buffer in chunk.buffers()
        if buffer is not None
    )


def test_what_a_piece_keeps_holds_none_of_the_piece():
    """The ids a piece keeps for the next (a filter of a String column) are views into the
    whole piece's text until detached: kept over a 100M-row window's 34 pieces they held
    several GiB (the peak grew piece after piece)."""
    ids = pl.select(pl.format("event-{}-{}", pl.int_range(100_000), pl.int_range(100_000)))
    piece = ids.to_series().alias("event_id").to_frame().with_row_index()
    kept = piece.filter(pl.col("index") % 1_000 == 0).select("event_id")
    assert _buffer_bytes(kept) > 1_000_000  # the whole piece's text, for 100 ids
    assert _buffer_bytes(detached(kept)) < 10_000
    assert detached(kept).equals(kept)


def test_a_chain_that_does_not_enrich_never_loads_the_ip_table(landing, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copytree(landing, data / "landing")

    def no_table():
        raise AssertionError("the IP table was loaded")

    runner = polars_runner.Runner(Paths(data), START, PROCESSED_AT, None, no_table)
    catalog = iceberg.open_catalog(data / "warehouse")
    results = dict(runner.run(["raw", "cleansed"], START, END, "test", catalog))
    assert results["cleansed"].rows > 0
    assert results["cleansed"].in_memory == {"raw"}
