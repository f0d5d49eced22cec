"""The landing zone: an external asset (files that sources drop) and a check that lists them."""

from __future__ import annotations

import dagster as dg

from etl_poc.lakehouse.landing_zone import (
    LANDING_FORMATS,
    landing_version,
    other_files,
    scan_landing_zone,
)
from etl_poc.logic.spec import LANDING_COLUMNS, column_description

from .metadata import OWNERS
from .resources import DataDirectory

LANDING_CLICKSTREAM = dg.AssetKey("landing_clickstream")
LANDING_FILES_CHECK = "landing_files_present"
NOT_INGESTED_CHECK = "every_landing_file_ingested"

landing_clickstream = dg.AssetSpec(
    LANDING_CLICKSTREAM,
    group_name="landing",
    kinds={"csv", "parquet"},
    owners=OWNERS,
    description=(
        "Clickstream files as sources drop them under `DATA/landing/` (DATA: ETL_POC_DATA_DIR): "
        "CSV with a header or Parquet, every column text, possibly dirty. `etl-poc generate` "
        "writes realistic ones."
    ),
    metadata={
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn(name, "string", description=column_description(name))
                for name in LANDING_COLUMNS
            ]
        )
    },
)


@dg.asset_check(asset=LANDING_CLICKSTREAM, name=LANDING_FILES_CHECK)
def landing_files_present(data_dir: DataDirectory) -> dg.AssetCheckResult:
    """Passes when the landing zone holds at least one file; lists them with sizes and rows."""
    files = scan_landing_zone(data_dir.landing)
    rows = [
        f"| {f.path.as_posix()} | {f.format} | {f.bytes:,} | {f.rows if f.rows is not None else '?'} |"
        for f in files
    ]
    listing = "\n".join(["| file | format | bytes | rows |", "|---|---|---:|---:|", *rows])
    return dg.AssetCheckResult(
        passed=bool(files),
        metadata={
            "files": len(files),
            "bytes": sum(f.bytes for f in files),
            "version": landing_version(files, data_dir.landing),
            "landing_dir": dg.MetadataValue.path(str(data_dir.landing.resolve())),
            "listing": dg.MetadataValue.md(listing if files else "_no landing files yet_"),
        },
    )


@dg.asset_check(
    asset=LANDING_CLICKSTREAM,
    name=NOT_INGESTED_CHECK,
    description="Warns about files under landing/ that the pipeline does not ingest, naming "
    f"them: files not {', '.join(LANDING_FORMATS)} (in any case), and quarantined files "
    "(unreadable, or lacking a column of the contract), each with why, so none is skipped "
    "silently. A quarantined file is read again once it changes.",
)
def every_landing_file_ingested(data_dir: DataDirectory) -> dg.AssetCheckResult:
    landing = data_dir.paths.landing
    ignored = [path.as_posix() for path in other_files(landing)]
    files = [landing / info.path for info in scan_landing_zone(landing)]
    rejected = data_dir.paths.landing_index.rejected(files)
    return dg.AssetCheckResult(
        passed=not ignored and not rejected,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "not_ingested": len(ignored),
            "quarantined": len(rejected),
            "files": dg.MetadataValue.md(
                "\n".join(f"- `{name}`" for name in ignored) or "_every file is ingested_"
            ),
            "landing_rejected_files": dg.MetadataValue.md(
                "\n".join(f"- `{name}`: {why}" for name, why in rejected.items())
                or "_no file quarantined_"
            ),
        },
    )
