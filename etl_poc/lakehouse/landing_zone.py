"""The landing zone: the CSV and Parquet files that sources drop, and the generator's manifests."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import polars as pl

# The formats the pipeline ingests, by how a file's name ends (in any case). Anything else
# under landing/ is listed as not ingested (other_files), never silently skipped; a
# generator's manifest_*.json at the top is the one expected exception.
LANDING_FORMATS = {".csv": "csv", ".csv.gz": "csv.gz", ".parquet": "parquet"}


def landing_format(path: Path) -> str | None:
    """The format a landing file is ingested as (csv, csv.gz, parquet), None if none."""
    name = path.name.lower()
    return next((f for end, f in LANDING_FORMATS.items() if name.endswith(end)), None)


def _is_manifest(path: Path, landing_dir: Path) -> bool:
    return (
        path.parent == landing_dir and path.name.startswith("manifest_") and path.suffix == ".json"
    )


def other_files(landing_dir: Path) -> list[Path]:
    """The files under `landing_dir` that are not ingested (no landing format), relative to
    it: what a source dropped that the pipeline cannot read, to be shown and warned about."""
    if not landing_dir.is_dir():
        return []
    return sorted(
        p.relative_to(landing_dir)
        for p in landing_dir.rglob("*")
        if p.is_file() and landing_format(p) is None and not _is_manifest(p, landing_dir)
    )


@dataclass(frozen=True)
class LandingFileInfo:
    path: Path  # relative to the landing directory
    format: str
    bytes: int
    rows: int | None  # from a manifest when one describes the file


def scan_landing_zone(landing_dir: Path) -> list[LandingFileInfo]:
    """Every landing file under `landing_dir`, with its row count where a manifest gives it."""
    if not landing_dir.is_dir():
        return []
    rows_by_path: dict[str, int] = {}
    for manifest in sorted(landing_dir.glob("manifest_*.json")):
        try:
            content = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a manifest is a convenience; the files themselves are the truth
        for entry in content.get("files", []):
            for path in entry.get("paths", {}).values():
                rows_by_path[path] = entry.get("rows")
    found = sorted(p for p in landing_dir.rglob("*") if p.is_file() and landing_format(p))
    return [
        LandingFileInfo(
            path=p.relative_to(landing_dir),
            format=landing_format(p),
            bytes=p.stat().st_size,
            rows=rows_by_path.get(p.relative_to(landing_dir).as_posix()),
        )
        for p in found
    ]


def landing_rows(path: Path) -> int:
    """The data rows of a landing file: from the footer of a Parquet file, by counting line
    ends (after the header) in a CSV file (decompressed as it is read, for csv.gz)."""
    if landing_format(path) == "parquet":
        import pyarrow.parquet as pq

        return pq.read_metadata(path).num_rows
    lines, last = 0, b"\n"
    with open_text_file(path) as handle:
        while chunk := handle.read(1 << 24):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    lines += last != b"\n"  # a last line without its line end
    return max(lines - 1, 0)


def file_version(path: Path) -> list[int]:
    """What changes whenever a file's content may have: its size, modification time, change
    time and inode. A copy that keeps the modification time (`cp -p`, `rsync -t`) still
    changes the change time (which no user can set) or the inode (a rename into place)."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def open_text_file(path: Path):
    """A CSV landing file's bytes, decompressed when it is a csv.gz."""
    import gzip

    return gzip.open(path, "rb") if landing_format(path) == "csv.gz" else path.open("rb")


def landing_version(files: list[LandingFileInfo], landing_dir: Path) -> str:
    """Changes whenever a file is added, removed, resized or rewritten."""
    digest = hashlib.sha256()
    for info in files:
        version = ":".join(str(n) for n in file_version(landing_dir / info.path))
        digest.update(f"{info.path.as_posix()}:{version}\n".encode())
    return digest.hexdigest()[:16]


def landing_window(days: LandingIndex, start_date: date, today: date) -> tuple[date, date] | None:
    """The daily partitions the landing zone's rows fall in, first and last (inclusive):
    from the generator's manifests when there are any (their window, whose last day takes
    sessions running past midnight), else from the files' own days (`days`, the cached
    index); never before `start_date` nor after `today`. None when the landing zone is empty."""
    windows = []
    for manifest in sorted(days.landing_dir.glob("manifest_*.json")):
        try:
            first, last = json.loads(manifest.read_text())["window"]
        except (OSError, json.JSONDecodeError, KeyError, ValueError):
            continue  # not a generator manifest: the files themselves tell
        windows.append((date.fromisoformat(first), date.fromisoformat(last)))
    if not windows:
        files = [days.landing_dir / f.path for f in scan_landing_zone(days.landing_dir)]
        windows = [found for found in days.days(files).values() if found]
    if not windows:
        return None
    first = max(min(w[0] for w in windows), start_date)
    last = min(max(w[1] for w in windows), today)
    return (first, last) if first <= last else None


def _line_of_offset(path: Path, offset: int) -> int:
    """The line (1-based) of a CSV landing file that a byte offset into its records (after
    the header line, as Polars' reader counts them) lies on."""
    with open_text_file(path) as handle:
        handle.readline()
        return handle.read(offset).count(b"\n") + 2


def _reason(path: Path, error: Exception) -> str:
    """Why a landing file cannot be read, naming it and, where the reader says, the line."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    if (found := re.search(r"offset in the file is (\d+) bytes", text)) is not None:
        first += f" (line {_line_of_offset(path, int(found.group(1)))})"
    return first if first.startswith(str(path)) else f"{path}: {first}"


@dataclass(frozen=True)
class FileFacts:
    """What one version of a landing file holds: the first and last UTC day of its
    timestamps that parse (usable or not: before the start, in the future or on a malformed
    line; None when none parses), or why it cannot be read at all (`rejected`: the file is
    quarantined). Its events' ids are written beside when a later window first needs them
    (write_event_ids)."""

    days: tuple[date, date] | None
    rejected: str | None = None


# Every time is usable here: what is left rejected is rejected whenever it is processed.
_ANY_TIME = {"start_date": date(1, 1, 1), "processed_at": datetime(9000, 1, 1)}


def _standardized(path: Path, landing_dir: Path) -> pl.LazyFrame:
    from etl_poc.lakehouse.landing_readers import polars_read_landing
    from etl_poc.logic import polars_engine

    return polars_engine.standardize(polars_read_landing([path], landing_dir), **_ANY_TIME)


def inspect_landing_file(path: Path, landing_dir: Path) -> FileFacts:
    """Read a landing file once, whole, with Polars into the raw contract: its days, or, when
    it cannot be read, why (the file named, and the line where the reader tells), so that
    one bad file is quarantined, not every run broken."""
    from etl_poc.logic.spec import TEXT_COLUMNS

    # Every column is read (a reader's error in any of them is found here, not in a run).
    every_field = pl.sum_horizontal(pl.col(f"raw_{c}").str.len_bytes().sum() for c in TEXT_COLUMNS)
    try:
        days = (
            _standardized(path, landing_dir)
            .select(
                first=pl.col("event_date").min(), last=pl.col("event_date").max(), _=every_field
            )
            .collect(engine="streaming")
            .row(0)
        )
    except Exception as error:  # every reader's error quarantines the file
        return FileFacts(None, _reason(path, error))
    return FileFacts(None if days[0] is None else (days[0], days[1]))


def write_event_ids(path: Path, landing_dir: Path, ids: Path) -> None:
    """The event_id and event_ts of a landing file's rows whose reject reason cannot depend
    on the processing time or the start date, as Parquet at `ids` (for
    LandingIndex.event_ids_before), written whole and renamed into place."""
    usable = _standardized(path, landing_dir).filter(pl.col("reject_reason").is_null())
    ids.parent.mkdir(parents=True, exist_ok=True)
    partial = ids.with_suffix(f".{os.getpid()}.tmp")
    usable.select("event_id", "event_ts").sink_parquet(partial)
    os.replace(partial, ids)


def timestamp_day_range(path: Path, landing_dir: Path) -> tuple[date, date] | None:
    """The first and last UTC day of the timestamps in a landing file that parse (see
    FileFacts), None when none parses (or when it cannot be read)."""
    return inspect_landing_file(path, landing_dir).days


class LandingIndex:
    """What each landing file holds (inspect_landing_file), computed once per file version
    (path and file_version: size, mtime, ctime, inode) and kept under `directory`: a small
    JSON index of days and quarantined files, and one Parquet file of event ids per version.
    A daily run so reads only the files that can hold rows of its window, skips the files
    that cannot be read (naming them), and finds the copies of its events in earlier days
    without reading the history."""

    def __init__(self, landing_dir: Path, directory: Path):
        self.landing_dir, self.directory = landing_dir, directory
        self.index = directory / "files.json"

    def _load(self) -> dict:
        try:
            return json.loads(self.index.read_text())
        except (OSError, json.JSONDecodeError):
            return {}  # no index yet, or a damaged one: it is only a cache

    def _ids_path(self, key: str, version: list[int]) -> Path:
        name = hashlib.sha256(f"{key}:{version}".encode()).hexdigest()[:24]
        return self.directory / "event_ids" / f"{name}.parquet"

    def facts(self, files: list[Path]) -> dict[Path, FileFacts]:
        known, found, changed = self._load(), {}, False
        for path in files:
            key = path.relative_to(self.landing_dir).as_posix()
            version = file_version(path)
            entry = known.get(key)
            if entry is None or entry["version"] != version:
                if entry is not None:  # the old version's ids, if they were ever needed
                    self._ids_path(key, entry["version"]).unlink(missing_ok=True)
                facts = inspect_landing_file(path, self.landing_dir)
                days = facts.days and [d.isoformat() for d in facts.days]
                entry = {"version": version, "days": days, "rejected": facts.rejected}
                known[key], changed = entry, True
            days = entry["days"] and tuple(date.fromisoformat(d) for d in entry["days"])
            found[path] = FileFacts(days, entry.get("rejected"))
        if changed:  # written whole and renamed, so a concurrent run never reads half of it
            self.directory.mkdir(parents=True, exist_ok=True)
            partial = self.index.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(known, indent=1, sort_keys=True))
            os.replace(partial, self.index)
        return found

    def days(self, files: list[Path]) -> dict[Path, tuple[date, date] | None]:
        """Each readable file's days (None: no timestamp parses, or the file is quarantined)."""
        return {path: facts.days for path, facts in self.facts(files).items()}

    def rejected(self, files: list[Path]) -> dict[str, str]:
        """The quarantined files (relative to the landing directory) and why each is."""
        return {
            path.relative_to(self.landing_dir).as_posix(): facts.rejected
            for path, facts in self.facts(files).items()
            if facts.rejected
        }

    def files_for_window(
        self, files: list[Path], start: date, end: date, start_date: date
    ) -> list[Path]:
        """The readable files that may hold rows of the partition window [start, end): those
        with a day in it. A window that holds `start_date` reads every readable file, since
        the unusable rows of a file without a usable day go to the start date (any other
        unusable row goes to its file's earliest usable day, which lies within its days)."""
        facts = self.facts(files)
        readable = [p for p in files if not facts[p].rejected]
        if start <= start_date < end:
            return readable
        return [p for p in readable if facts[p].days and facts[p].days[0] < end
                and facts[p].days[1] >= start]  # fmt: skip

    def event_ids_before(self, files: list[Path], before: date) -> list[Path]:
        """The event-id files (event_id, event_ts) of the readable landing files with a day
        before `before`: where the earlier copies of a window's events are found."""
        facts, found = self.facts(files), []
        for path in files:
            if facts[path].rejected or not facts[path].days or facts[path].days[0] >= before:
                continue
            ids = self._ids_path(path.relative_to(self.landing_dir).as_posix(), file_version(path))
            if not ids.exists():  # made the first time a later window needs them
                write_event_ids(path, self.landing_dir, ids)
            found.append(ids)
        return found
