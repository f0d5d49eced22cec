"""Backups of a data directory, and their restore (the platform's disaster recovery).

The catalog stores absolute locations, so a copied data directory (`cp -a data data2`) would
write into the first warehouse. A backup is therefore not a copy of the warehouse: it holds
the landing zone and the layers as files (they hold no location), and every Iceberg table as
its rows at one snapshot (Parquet files), with its schema, partition spec and properties.
A restore creates each table anew in the target's catalog, under the target's warehouse, and
appends the rows in one commit: an independent lakehouse with the same rows, whose locations
are its own. Snapshot history before the backup is not carried over (the backup is taken at
a snapshot).

A backup is written into `<dest>.partial` and renamed into place when complete, so a killed
backup never looks like one; a restore refuses a target that already holds a lakehouse.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema

from etl_poc.lakehouse import iceberg
from etl_poc.lakehouse.paths import Paths

MANIFEST = "backup.json"
FORMAT = 1
_COPIED = ("landing", "layers")  # the directories of a data directory copied as files


def _copy_directories(source: Path, target: Path) -> None:
    for name in _COPIED:
        if (source / name).is_dir():
            shutil.copytree(source / name, target / name, symlinks=False)


def backup(paths: Paths, catalog, dest: Path) -> dict:
    """Write a backup of the data directory `paths` and its catalog's tables into `dest`
    (which must not exist); returns the manifest (each table's snapshot and rows)."""
    if dest.exists():
        raise FileExistsError(f"{dest}: already exists; a backup goes into a new directory")
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # a killed backup's leftovers
    partial.mkdir(parents=True)
    _copy_directories(paths.data, partial)
    tables = {}
    for namespace in sorted(catalog.list_namespaces()):
        for identifier in sorted(catalog.list_tables(namespace)):
            name = ".".join(identifier)
            table = catalog.load_table(identifier)
            tables[name] = _backup_table(table, partial / "tables" / name)
    manifest = {
        "format": FORMAT,
        "taken_at": datetime.now(UTC).isoformat(),
        "source": str(paths.data.resolve()),
        "tables": tables,
    }
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(partial, dest)
    return manifest


def _backup_table(table, target: Path) -> dict:
    """The table's rows at its current snapshot, as Parquet, and what recreates it."""
    target.mkdir(parents=True)
    snapshot = table.current_snapshot()
    rows = 0
    if snapshot is not None:
        reader = table.scan(snapshot_id=snapshot.snapshot_id).to_arrow_batch_reader()
        with pq.ParquetWriter(target / "rows.parquet", reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
    return {
        "snapshot_id": snapshot.snapshot_id if snapshot else None,
        "rows": rows,
        "schema": json.loads(table.schema().model_dump_json()),
        "partition_spec": json.loads(table.spec().model_dump_json()),
        "properties": dict(table.properties),
    }


def read_manifest(source: Path) -> dict:
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{source}: not a backup (no {MANIFEST})") from error
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{source / MANIFEST}: backup format {manifest.get('format')!r}, "
                         f"this version reads {FORMAT}")  # fmt: skip
    return manifest


def restore(source: Path, paths: Paths, catalog_uri: str | None = None) -> dict:
    """Restore the backup `source` into the data directory `paths` (which must hold no
    lakehouse yet) and its catalog (`catalog_uri`, or the embedded SQLite one); returns the
    rows restored per table, checked against the backup's manifest."""
    manifest = read_manifest(source)
    if iceberg.catalog_exists(paths.warehouse, catalog_uri) and _has_tables(paths, catalog_uri):
        raise FileExistsError(f"{paths.data}: already holds a lakehouse; restore into a new "
                              "data directory (or an empty catalog)")  # fmt: skip
    for name in _COPIED:
        if (paths.data / name).exists() and any((paths.data / name).iterdir()):
            raise FileExistsError(f"{paths.data / name}: not empty; restore into a new "
                                  "data directory")  # fmt: skip
        shutil.rmtree(paths.data / name, ignore_errors=True)
    paths.data.mkdir(parents=True, exist_ok=True)
    _copy_directories(source, paths.data)
    catalog = iceberg.open_catalog(paths.warehouse, catalog_uri)
    restored = {}
    for name, described in manifest["tables"].items():
        namespace, table_name = name.rsplit(".", 1)
        catalog.create_namespace_if_not_exists(namespace)
        table = catalog.create_table(
            f"{namespace}.{table_name}",
            schema=Schema.model_validate(described["schema"]),
            partition_spec=PartitionSpec.model_validate(described["partition_spec"]),
            properties=described["properties"],
        )
        rows_file = source / "tables" / name / "rows.parquet"
        if rows_file.exists():
            table.append(pq.read_table(rows_file))
        count = 0 if table.current_snapshot() is None else table.scan().count()
        if count != described["rows"]:
            raise RuntimeError(f"{name}: restored {count} rows, the backup holds "
                               f"{described['rows']}")  # fmt: skip
        restored[name] = count
    return restored


def _has_tables(paths: Paths, catalog_uri: str | None) -> bool:
    catalog = iceberg.open_catalog(paths.warehouse, catalog_uri)
    return any(catalog.list_tables(namespace) for namespace in catalog.list_namespaces())
