"""Configuration, in one place: environment variables with defaults, as Dagster resources."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

DATA_DIR_ENV = "ETL_POC_DATA_DIR"


class DataDirectory(dg.ConfigurableResource):
    """ETL_POC_DATA_DIR (default ./data): landing/ now; the layers and warehouse/ later."""

    path: str = os.environ.get(DATA_DIR_ENV, "data")

    @property
    def landing(self) -> Path:
        return Path(self.path) / "landing"


RESOURCES = {"data_dir": DataDirectory()}
