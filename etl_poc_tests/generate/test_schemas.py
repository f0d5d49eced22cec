"""The JSON Schemas (etl_poc/schemas): every event the generator writes without a defect
validates against its type's schema, every row of the operational tables against its
entity's, and each injected defect that the schemas cover fails them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import polars as pl
import pytest
from jsonschema import Draft202012Validator

from etl_poc.generate import DefectRates, GeneratorConfig, generate
from etl_poc.logic.spec import EVENT_TYPES, OLTP_TABLES
from etl_poc.schemas import entity_schema, event_schema, registry


def _validator(schema: dict) -> Draft202012Validator:
    return Draft202012Validator(
        schema, registry=registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "landing"
    result = generate(GeneratorConfig(events=30_000, label="c", out_dir=out, formats=("parquet",),
                                      defects=DefectRates().scaled(0), workers=1))  # fmt: skip
    events = pl.concat([pl.read_parquet(out / f["paths"]["parquet"])
                        for f in result.manifest["files"]])  # fmt: skip
    return events, out.parent / "oltp"


def test_every_clean_event_validates_against_its_type(clean):
    events, _ = clean
    validators = {t: _validator(event_schema(t)) for t in EVENT_TYPES}
    seen = set()
    for row in events.iter_rows(named=True):
        errors = list(validators[row["event_type"]].iter_errors(row))
        assert not errors, (row, [e.message for e in errors])
        seen.add(row["event_type"])
    assert seen == set(EVENT_TYPES)


def _json(value):
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def test_every_operational_row_validates_against_its_entity(clean):
    _, oltp = clean
    for table in OLTP_TABLES:
        validator = _validator(entity_schema(table))
        frames = [pl.read_parquet(oltp / "changes" / f"{table}.parquet").drop(
            "change_seq", "change_ts", "op")]  # fmt: skip
        if (oltp / "initial" / f"{table}.parquet").exists():
            frames.append(pl.read_parquet(oltp / "initial" / f"{table}.parquet"))
        rows = 0
        for frame in frames:
            for row in frame.iter_rows(named=True):
                document = {k: _json(v) for k, v in row.items() if v is not None}
                errors = list(validator.iter_errors(document))
                assert not errors, (table, row, [e.message for e in errors])
                rows += 1
        assert rows > 0, table


@pytest.mark.parametrize(
    ("event_type", "fields"),
    [
        ("PURCHASE", {"transaction_id": None}),
        ("PURCHASE", {"amount": "12.3"}),
        ("PRODUCT_VIEW", {"product_id": None}),
        ("PAGE_VIEW", {"product_id": "sku-1"}),
        ("SEARCH", {"search_query": None}),
    ],
)
def test_what_the_pipeline_rejects_fails_the_schemas(clean, event_type, fields):
    events, _ = clean
    row = events.filter(pl.col("event_type") == event_type).row(0, named=True)
    assert not list(_validator(event_schema(event_type)).iter_errors(row))
    assert list(_validator(event_schema(event_type)).iter_errors({**row, **fields}))
