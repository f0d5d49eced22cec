"""One settings module: every setting's variable and default, read from the environment once;
nothing under logic/ or lakehouse/ reads the environment itself."""

from __future__ import annotations

import ast
import re
from datetime import date
from pathlib import Path

import pytest

from etl_poc.settings import Settings, env_name, environment_variables

PACKAGE = Path(__file__).parents[1] / "etl_poc"


def test_defaults_and_overrides():
    defaults = Settings.from_environment({})
    assert defaults == Settings()
    assert defaults.start_date == date(2024, 1, 1)
    assert defaults.polars_chunk_rows == 1_000_000
    custom = Settings.from_environment(
        {"ETL_POC_START_DATE": "2025-02-03", "ETL_POC_POLARS_CHUNK_ROWS": "0",
         "ETL_POC_DATA_DIR": "/tmp/x", "ETL_POC_SPARK_MASTER": ""}  # empty: the default
    )  # fmt: skip
    assert custom.start_date == date(2025, 2, 3)
    assert custom.polars_chunk_rows == 0
    assert custom.data_dir == Path("/tmp/x")
    assert custom.spark_master == "local[*]"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ETL_POC_START_DATE", "yesterday", "ETL_POC_START_DATE='yesterday'"),
        ("ETL_POC_POLARS_CHUNK_ROWS", "-5", "0 or more"),
        ("ETL_POC_POLARS_ENGINE", "gpu", "in-memory"),
    ],
)
def test_a_bad_value_names_its_variable(variable, value, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_environment({variable: value})


def test_every_setting_has_a_variable_and_a_meaning():
    variables = environment_variables()
    assert all(name.startswith("ETL_POC_") and help for name, (_, help) in variables.items())
    assert env_name("catalog_uri") == "ETL_POC_CATALOG_URI"
    readme = (PACKAGE.parent / "README.md").read_text()
    documented = re.findall(r"^\| `(ETL_POC_[A-Z_]+)` \|", readme, re.M)
    assert sorted(documented) == sorted(variables)  # the README's table: each once, no other


@pytest.mark.parametrize("folder", ["logic", "lakehouse"])
def test_nothing_in_the_rules_or_the_io_reads_the_environment(folder):
    readers = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                readers.append(f"{path.name}:{node.lineno}")
            imported = isinstance(node, ast.ImportFrom) and node.module == "etl_poc.settings"
            if imported and any(alias.name == "settings" for alias in node.names):
                readers.append(f"{path.name}:{node.lineno} (settings())")
    assert readers == []
