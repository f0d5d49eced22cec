"""The events topic's messages <-> the raw contract (lakehouse.landing_readers), the one
place where the speed layer turns bytes into rows.

A message is one landing row as a JSON object of the landing columns' text (spec: the speed
layer), keyed by user_id. Decoded, a batch of messages is the raw contract every engine's
rules start from: the text columns, `source_file` (`<topic>/<partition>`, so exact replays
of an event tie completely), `malformed` (not a JSON object of texts: MALFORMED_LINE) and
`commerce` (the object has the commerce fields), plus where each message came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import orjson
import polars as pl

from etl_poc.logic.spec import (
    COMMERCE,
    COMMERCE_COLUMNS,
    LANDING_COLUMNS,
    SOURCE_FILE,
    TEXT_COLUMNS,
)

# Where a message came from, carried beside the raw contract (and into the dead letters).
PARTITION, OFFSET, PRODUCED_AT = "message_partition", "message_offset", "produced_at"
REASON_HEADER = "reject_reason"


def encode_rows(rows: pl.DataFrame) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) per landing row, in the frame's order: the user_id, and the row's landing
    columns as a JSON object (a file without the commerce columns gives objects without them)."""
    columns = [c for c in LANDING_COLUMNS if c in rows.columns]
    for row in rows.select(columns).iter_rows(named=True):
        user = row.get("user_id")
        yield (user.encode() if user else None), orjson.dumps(row)


def _text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | dict | list):
        raise TypeError
    return str(value)  # a number sent by a producer that is not ours


def decode(messages: Iterable, topic: str) -> pl.DataFrame:
    """The raw contract of consumed messages (confluent_kafka Message objects), one row each,
    in their order: a message that is not a JSON object of texts is a malformed row, its
    fields null (the dead letter keeps its bytes)."""
    columns: dict[str, list] = {c: [] for c in TEXT_COLUMNS}
    malformed, commerce, partitions, offsets, produced = [], [], [], [], []
    for message in messages:
        partitions.append(message.partition())
        offsets.append(message.offset())
        produced.append(message.timestamp()[1])
        try:
            fields = orjson.loads(message.value())
            if not isinstance(fields, dict):
                raise TypeError
            values = {c: _text(fields.get(c)) for c in TEXT_COLUMNS}
        except (orjson.JSONDecodeError, TypeError):
            values, fields = dict.fromkeys(TEXT_COLUMNS), {}
            malformed.append(True)
        else:
            malformed.append(False)
        commerce.append(all(c in fields for c in COMMERCE_COLUMNS))
        for name, value in values.items():
            columns[name].append(value)
    return pl.DataFrame(
        {
            **{name: pl.Series(name, values, pl.String) for name, values in columns.items()},
            SOURCE_FILE: pl.Series([f"{topic}/{p}" for p in partitions], dtype=pl.String),
            "malformed": pl.Series(malformed, dtype=pl.Boolean),
            COMMERCE: pl.Series(commerce, dtype=pl.Boolean),
            PARTITION: pl.Series(partitions, dtype=pl.Int32),
            OFFSET: pl.Series(offsets, dtype=pl.Int64),
            PRODUCED_AT: pl.Series(produced, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")),
        }
    )
