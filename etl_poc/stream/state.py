"""A streaming sessionizer's state on disk: the users' watermarks (spec, the speed layer) as
they stood after each micro-batch, and, for the Polars loop, its offsets and the planned range
of the next batch. Every file is written whole and renamed into place, so a process killed
at any moment leaves the state of the last committed batch.

Batch n reads the watermarks of the last batch before n (never its own, which a killed run
may have written before its commit): a batch replayed after a kill computes what it computed
the first time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from etl_poc.logic.spec import SESSION_CONTEXT_COLUMNS

KEPT_VERSIONS = 3  # watermark versions kept behind the last commit


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)


@dataclass
class Committed:
    batch: int = -1  # the last committed batch (-1: none)
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset
    planned: dict[int, int] | None = None  # partition -> end offset of batch + 1, once planned


class StreamState:
    def __init__(self, directory: Path):
        self.directory = directory
        (directory / "watermarks").mkdir(parents=True, exist_ok=True)

    # --- the users' watermarks, versioned by batch ---------------------------------------

    def _version(self, batch: int) -> Path:
        return self.directory / "watermarks" / f"{batch:012d}.parquet"

    def watermarks_before(self, batch: int) -> pl.DataFrame | None:
        """The watermarks as the last batch before `batch` left them (None: no batch yet)."""
        versions = sorted(
            int(p.stem) for p in (self.directory / "watermarks").glob("*.parquet")
            if int(p.stem) < batch
        )  # fmt: skip
        return pl.read_parquet(self._version(versions[-1])) if versions else None

    def save_watermarks(self, batch: int, watermarks: pl.DataFrame) -> None:
        frame = watermarks.select(SESSION_CONTEXT_COLUMNS)
        temporary = self._version(batch).with_suffix(".tmp")
        frame.write_parquet(temporary)
        temporary.replace(self._version(batch))
        for old in (self.directory / "watermarks").glob("*.parquet"):
            if int(old.stem) < batch - KEPT_VERSIONS:
                old.unlink(missing_ok=True)

    # --- offsets and the next batch's planned range (the Polars loop; Spark keeps its own) --

    @property
    def _committed_path(self) -> Path:
        return self.directory / "committed.json"

    def committed(self) -> Committed:
        if not self._committed_path.exists():
            return Committed()
        raw = json.loads(self._committed_path.read_text())
        planned = raw.get("planned")
        return Committed(
            raw["batch"],
            {int(k): v for k, v in raw["offsets"].items()},
            None if planned is None else {int(k): v for k, v in planned.items()},
        )

    def _save(self, committed: Committed) -> None:
        payload = {
            "batch": committed.batch,
            "offsets": {str(k): v for k, v in sorted(committed.offsets.items())},
            "planned": None if committed.planned is None
            else {str(k): v for k, v in sorted(committed.planned.items())},
        }  # fmt: skip
        _write_atomically(self._committed_path, json.dumps(payload, indent=1).encode())

    def plan(self, ends: dict[int, int]) -> None:
        """Record the next batch's end offsets before reading it (a replay reads the same)."""
        committed = self.committed()
        committed.planned = dict(ends)
        self._save(committed)

    def commit(self, batch: int, offsets: dict[int, int]) -> None:
        """The batch is written: its offsets become the place to resume from."""
        self._save(Committed(batch, dict(offsets), None))
