"""Where everything of a data directory lives: the one place that joins paths onto it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from etl_poc.lakehouse.landing_zone import LandingIndex


@dataclass(frozen=True)
class Paths:
    data: Path

    @property
    def landing(self) -> Path:
        """The files sources drop, and the generator's manifests."""
        return self.data / "landing"

    @property
    def layers(self) -> Path:
        """The intermediate layers, <layers>/<engine>/<layer>/<day key>=YYYY-MM-DD/."""
        return self.data / "layers"

    @property
    def warehouse(self) -> Path:
        """The Iceberg warehouse (data and metadata files, and the SQLite catalog)."""
        return self.data / "warehouse"

    @property
    def oltp_source(self) -> Path:
        """The generator's operational tables (initial/ and changes/), loaded into PostgreSQL."""
        return self.data / "oltp"

    @property
    def postgres(self) -> Path:
        """The embedded PostgreSQL's data directory (the operational database)."""
        return self.data / "postgres"

    @property
    def cdc_state(self) -> Path:
        """Debezium's stored offsets, and which database they are of."""
        return self.data / "cdc"

    @property
    def dbt_warehouse(self) -> Path:
        """The warehouse (dbt's models: raw, staging, intermediate, marts), a DuckDB file."""
        return self.data / "warehouse.duckdb"

    @property
    def analytics_database(self) -> Path:
        """The DuckDB file the analytics answers are kept in."""
        return self.data / "analytics.duckdb"

    @property
    def stream(self) -> Path:
        """The speed layer: the sessionizers' state and checkpoints, status files, and the
        embedded ClickHouse stores (clickhouse-<engine>/)."""
        return self.data / "stream"

    @property
    def landing_index(self) -> LandingIndex:
        """What each landing file version holds (days, event ids, or why it cannot be
        read), kept under <layers>/landing_index/."""
        return LandingIndex(self.landing, self.layers / "landing_index")
