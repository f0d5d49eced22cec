"""The landing zone: the CSV and Parquet files that sources drop, and the generator's manifests."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

LANDING_SUFFIXES = (".csv", ".parquet")


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
    found = sorted(
        p for p in landing_dir.rglob("*") if p.is_file() and p.suffix in LANDING_SUFFIXES
    )
    return [
        LandingFileInfo(
            path=p.relative_to(landing_dir),
            format=p.suffix.lstrip("."),
            bytes=p.stat().st_size,
            rows=rows_by_path.get(p.relative_to(landing_dir).as_posix()),
        )
        for p in found
    ]


def landing_version(files: list[LandingFileInfo], landing_dir: Path) -> str:
    """Changes whenever a file is added, removed, resized or rewritten."""
    digest = hashlib.sha256()
    for info in files:
        stat = (landing_dir / info.path).stat()
        digest.update(f"{info.path.as_posix()}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
