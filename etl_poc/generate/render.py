"""Rows of integers -> the landing table of text, defects written the way sources write them.

Clean values are taken from vocabularies or formatted column-wise straight into Arrow buffers;
the few dirty values (about 2 % of rows) are then written over, each from the row's own
`variant` draw, so the output depends only on the rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl_poc.generate.commerce import NONE, Orders
from etl_poc.generate.events import Defect, Rows
from etl_poc.generate.vocab import Catalog, PageVocabulary, Population
from etl_poc.logic.spec import DEVICES, EVENT_TYPES, LANDING_COLUMNS, USER_TIERS

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Two hex digits per byte value, as one uint16 so that a lookup moves both at once.
_BYTE_HEX = np.stack([_HEX[np.arange(256) >> 4], _HEX[np.arange(256) & 15]], axis=1).view(
    np.uint16
)[:, 0]
_DAY_MS = 86_400_000
_THREE_DIGITS = np.array([list(f"{i:03d}".encode()) for i in range(1000)], dtype=np.uint8)

UNPARSEABLE_TIMESTAMPS = (
    "not-a-timestamp",
    "2024-02-30 25:61:00",
    "15/01/2024 10:00:00",
    "NaN",
    "null",
    "1705320000",
    "yesterday",
    "0000-00-00 00:00:00",
    "2024-13-01 00:00:00.000",
    "12:30:00",
)
OFFSETS_MINUTES = (60, 120, -300, -480, 330, 540, 0, -180)
MALFORMED_IPS = (
    "999.12.3.4",
    "10.0.0",
    "256.1.1.1",
    "1.2.3.4.5",
    "abc.def.ghi.jkl",
    "192.168.1.",
    "::zz",
    "-",
    "unknown",
    "1.2.3.04a",
)
EMPTY_TEXTS = ("", " ", "   ")
MALFORMED_AMOUNTS = ("12.3", "$19.99", "19,99", "-5.00", "NaN", "1e3", "10.000", "free")


def _hex_digits(values: np.ndarray) -> np.ndarray:
    """(n,) uint64 -> (n, 16) ASCII hex digits, most significant first."""
    big_endian = values.astype(">u8").view(np.uint8).reshape(-1, 8)
    return _BYTE_HEX[big_endian].view(np.uint8).reshape(-1, 16)


def _fixed_width_strings(chars: np.ndarray) -> pa.Array:
    """(n, w) ASCII bytes -> a string array over the same bytes (no copy)."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(chars)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _uuid_strings(hi: np.ndarray, lo: np.ndarray) -> pa.Array:
    """Version-4 UUID text from two random 64-bit halves."""
    hi = (hi & np.uint64(0xFFFFFFFFFFFF0FFF)) | np.uint64(0x4000)
    lo = (lo & np.uint64(0x3FFFFFFFFFFFFFFF)) | np.uint64(0x8000000000000000)
    high, low = _hex_digits(hi), _hex_digits(lo)
    out = np.empty((len(hi), 36), dtype=np.uint8)
    out[:, [8, 13, 18, 23]] = ord("-")
    out[:, 0:8], out[:, 9:13], out[:, 14:18] = high[:, 0:8], high[:, 8:12], high[:, 12:16]
    out[:, 19:23], out[:, 24:36] = low[:, 0:4], low[:, 4:16]
    return _fixed_width_strings(out)


@cache
def _time_of_day_text() -> np.ndarray:
    """(86400, 8): 'HH:MM:SS' for every second of a day."""
    seconds = np.arange(86_400)
    text = np.char.mod("%02d:", seconds // 3600)
    text = np.char.add(text, np.char.mod("%02d:", seconds // 60 % 60))
    text = np.char.add(text, np.char.mod("%02d", seconds % 60))
    return text.astype("S8").view(np.uint8).reshape(-1, 8)


def _utc_text(ts_ms: np.ndarray) -> pa.Array:
    """'YYYY-MM-DD HH:MM:SS.mmm' for epoch milliseconds, assembled from lookup tables of dates,
    times of day and milliseconds: several times faster than a datetime formatter, and this
    column is on the generator's hot path."""
    days, ms_of_day = np.divmod(ts_ms, _DAY_MS)
    first_day = int(days.min(initial=0))
    n_days = int(days.max(initial=0)) - first_day + 1
    day_text = (
        (np.arange(first_day, first_day + n_days).astype("datetime64[D]").astype("S10"))
        .view(np.uint8)
        .reshape(-1, 10)
    )
    ms_of_day = ms_of_day.astype(np.int32)
    out = np.empty((len(ts_ms), 23), dtype=np.uint8)
    out[:, 0:10] = day_text[days - first_day]
    out[:, 10] = ord(" ")
    out[:, 11:19] = _time_of_day_text()[ms_of_day // 1000]
    out[:, 19] = ord(".")
    out[:, 20:23] = _THREE_DIGITS[ms_of_day % 1000]
    return _fixed_width_strings(out)


def _offset_text(ts_ms: int, variant: int) -> str:
    minutes = OFFSETS_MINUTES[variant % len(OFFSETS_MINUTES)]
    local = datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(
        timezone(timedelta(minutes=minutes))
    )
    # Some sources send microseconds: the same instant, written longer.
    text = local.isoformat(timespec="microseconds" if variant & 8 else "milliseconds")
    if minutes == 0:
        text = text.replace("+00:00", "Z")
    if variant & 16:  # and some a space instead of the 'T'
        text = text.replace("T", " ", 1)
    return text


def _private_ip(variant: int) -> str:
    a, b, c = (variant >> 3) & 255, (variant >> 11) & 255, (variant >> 19) & 253
    return (
        f"10.{a}.{b}.{c + 1}",
        f"172.{16 + (a & 15)}.{b}.{c + 1}",
        f"192.168.{b}.{c + 1}",
        f"100.{64 + (a & 63)}.{b}.{c + 1}",  # carrier-grade NAT, shared address space
        "127.0.0.1",
        f"169.254.{b}.{c + 1}",
    )[variant % 6]


def _odd_case(text: str, variant: int) -> str:
    cased = (text.upper(), text.capitalize(), text.swapcase().capitalize().swapcase())[variant % 3]
    pad = ("", " ", "  ", "\t")
    return pad[(variant >> 2) % 4] + cased + pad[(variant >> 4) % 4]


def _odd_spellings(device: str) -> list[str]:
    """The distinct odd spellings of a device (odd case, padding), never the clean one."""
    spellings = {_odd_case(device, v) for v in range(64)} - {device}
    return sorted(spellings)


# The device dictionary: the clean names, then each device's odd spellings. Its values must be
# distinct: Parquet re-encodes a dictionary with repeated values in an order that varies by run.
_ODD_DEVICE_SPELLINGS = [_odd_spellings(d) for d in DEVICES]
_ODD_DEVICE_COUNT = np.array([len(s) for s in _ODD_DEVICE_SPELLINGS], dtype=np.int32)
_ODD_DEVICE_OFFSET = len(DEVICES) + np.concatenate([[0], np.cumsum(_ODD_DEVICE_COUNT)[:-1]])
_DEVICE_DICTIONARY = pa.array(
    list(DEVICES) + [s for spellings in _ODD_DEVICE_SPELLINGS for s in spellings], type=pa.string()
)
_EVENT_TYPE_DICTIONARY = pa.array(EVENT_TYPES, type=pa.string())
_USER_TIER_DICTIONARY = pa.array(USER_TIERS, type=pa.string())


_DICTIONARY_COLUMNS = {
    "page_url": pa.dictionary(pa.int32(), pa.string()),
    "product_id": pa.dictionary(pa.int32(), pa.string()),
    "search_query": pa.dictionary(pa.int32(), pa.string()),
    "device": pa.dictionary(pa.int32(), pa.string()),
    "event_type": pa.dictionary(pa.int8(), pa.string()),
    "user_tier": pa.dictionary(pa.int8(), pa.string()),
}
# What render() returns. Written to Parquet without the Arrow schema, every column reads back
# as plain text; the dictionaries only make writing cheaper.
RENDERED_SCHEMA = pa.schema(
    [(name, _DICTIONARY_COLUMNS.get(name, pa.string())) for name in LANDING_COLUMNS]
)


def _replace(array: pa.Array, edits: list[tuple[np.ndarray, list]]) -> pa.Array:
    """`array` (string, no nulls) with the values at each edit's positions replaced; None
    writes a null. Built from buffers: the untouched runs between edits are copied as they
    are, which is several times faster than a masked replace for a few edits per thousand."""
    edits = [(at, values) for at, values in edits if len(at)]
    if not edits:
        return array
    at = np.concatenate([e[0] for e in edits])
    values = [v for e in edits for v in e[1]]
    order = np.argsort(at, kind="stable")
    at = at[order]
    texts = [values[i] for i in order]
    encoded = [b"" if t is None else t.encode() for t in texts]

    _validity, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[
        array.offset : array.offset + len(array) + 1
    ]
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    lengths = np.diff(offsets)
    lengths[at] = [len(e) for e in encoded]
    new_offsets = np.zeros(len(array) + 1, dtype=np.int32)
    np.cumsum(lengths, out=new_offsets[1:])

    # Untouched runs: from the end of one edited row to the start of the next.
    run_starts = offsets[np.concatenate([[0], at + 1])]
    run_ends = offsets[np.concatenate([at, [len(array)]])]
    pieces: list = []
    for i, (start, end) in enumerate(zip(run_starts.tolist(), run_ends.tolist(), strict=True)):
        pieces.append(data[start:end])
        if i < len(encoded):
            pieces.append(np.frombuffer(encoded[i], dtype=np.uint8))
    new_data = np.concatenate(pieces)

    nulls = [i for i, t in enumerate(texts) if t is None]
    validity = None
    if nulls:
        valid = np.ones(len(array), dtype=bool)
        valid[at[nulls]] = False
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(
        pa.string(),
        len(array),
        [validity, pa.py_buffer(new_offsets), pa.py_buffer(new_data)],
        null_count=len(nulls),
    )


def _indexed(index: np.ndarray, dictionary: pa.Array) -> pa.DictionaryArray:
    """A dictionary array over `dictionary`, null where `index` is NONE."""
    missing = index == NONE
    indices = pa.array(np.where(missing, 0, index).astype(np.int32), mask=missing)
    return pa.DictionaryArray.from_arrays(indices, dictionary)


def money_text(cents: np.ndarray) -> pa.Array:
    """Cents as dollars with two decimals ('123.05')."""
    dollars = pc.cast(pa.array(cents // 100), pa.string())
    rest = pc.utf8_lpad(pc.cast(pa.array(cents % 100), pa.string()), 2, "0")
    return pc.binary_join_element_wise(dollars, rest, ".")


def _order_columns(rows: Rows, orders: Orders) -> tuple[pa.Array, pa.Array]:
    """transaction_id and amount: a PURCHASE's order's id and total, null elsewhere."""
    at = pa.array(np.where(rows.order == NONE, 0, rows.order), mask=rows.order == NONE)
    if not len(orders):
        nulls = pa.nulls(len(rows), pa.string())
        return nulls, nulls
    ids = _uuid_strings(orders.id_hi, orders.id_lo)
    return pc.take(ids, at), pc.take(money_text(orders.total_cents), at)


def render(
    rows: Rows, population: Population, pages: PageVocabulary, catalog: Catalog, orders: Orders
) -> pa.Table:
    """The landing table (LANDING_SCHEMA, text in every column) for `rows`, in their order.

    Low-cardinality columns are dictionary arrays over a fixed vocabulary: no copy of their
    text, and Parquet writes them dictionary-encoded without hashing a value.
    """

    def dirty(kind: Defect) -> tuple[np.ndarray, list[int]]:
        at = np.flatnonzero(rows.defect == kind)
        return at, rows.variant[at].tolist()

    def choose(kind: Defect, choices: tuple) -> tuple[np.ndarray, list]:
        at, variant = dirty(kind)
        return at, [choices[v % len(choices)] for v in variant]

    at_null_event, _ = dirty(Defect.NULL_EVENT_ID)
    event_id = _replace(
        _uuid_strings(rows.id_hi, rows.id_lo),
        [(at_null_event, [None] * len(at_null_event)), choose(Defect.EMPTY_EVENT_ID, EMPTY_TEXTS)],
    )

    at_null_user, _ = dirty(Defect.NULL_USER_ID)
    user_id = _replace(
        pc.take(population.user_ids, rows.user),
        [(at_null_user, [None] * len(at_null_user)), choose(Defect.EMPTY_USER_ID, EMPTY_TEXTS)],
    )

    at_offset, variant = dirty(Defect.OFFSET_TIMESTAMP)
    offset_texts = [
        _offset_text(t, v) for t, v in zip(rows.ts_ms[at_offset].tolist(), variant, strict=True)
    ]
    timestamp = _replace(
        _utc_text(rows.ts_ms),
        [choose(Defect.UNPARSEABLE_TIMESTAMP, UNPARSEABLE_TIMESTAMPS), (at_offset, offset_texts)],
    )

    # Odd devices index the odd spellings that follow the clean ones in the dictionary.
    device_index = rows.device.astype(np.int32)
    at_odd = np.flatnonzero(rows.defect == Defect.ODD_DEVICE)
    device = device_index[at_odd]
    spelling = rows.variant[at_odd].astype(np.int64) % _ODD_DEVICE_COUNT[device]
    device_index[at_odd] = _ODD_DEVICE_OFFSET[device] + spelling

    ip_address = pc.take(population.ip_addresses, rows.ip)
    at_padded, variant = dirty(Defect.PADDED_IP)
    pads = ((" ", ""), ("", " "), ("  ", "  "), ("\t", ""))
    padded = [
        pads[v % 4][0] + ip + pads[v % 4][1]
        for ip, v in zip(pc.take(ip_address, at_padded).to_pylist(), variant, strict=True)
    ]
    at_private, variant = dirty(Defect.PRIVATE_IP)
    at_missing, variant_missing = dirty(Defect.MISSING_IP)
    ip_address = _replace(
        ip_address,
        [
            choose(Defect.MALFORMED_IP, MALFORMED_IPS),
            (at_private, [_private_ip(v) for v in variant]),
            (at_missing, [None if v % 2 else "" for v in variant_missing]),
            (at_padded, padded),
        ],
    )

    columns = {
        "event_id": event_id,
        "user_id": user_id,
        "session_id": _fixed_width_strings(_hex_digits(rows.session_token)),
        "timestamp": timestamp,
        "page_url": pa.DictionaryArray.from_arrays(rows.url, pages.urls),
        "country": pc.take(population.declared_country, rows.user),
        "device": pa.DictionaryArray.from_arrays(device_index, _DEVICE_DICTIONARY),
        "ip_address": ip_address,
        "event_type": pa.DictionaryArray.from_arrays(rows.event_type, _EVENT_TYPE_DICTIONARY),
        "user_tier": pa.DictionaryArray.from_arrays(rows.tier, _USER_TIER_DICTIONARY),
        "product_id": _indexed(
            np.where(rows.defect == Defect.MISSING_PRODUCT_ID, NONE, rows.product),
            catalog.sku_text,
        ),
        "search_query": _indexed(rows.term, pages.search_terms),
    }
    columns["transaction_id"], amount = _order_columns(rows, orders)
    at_amount, texts = choose(Defect.MALFORMED_AMOUNT, MALFORMED_AMOUNTS)
    if len(at_amount):  # a few, on a column mostly null: _replace keeps no null of its own
        mask = np.zeros(len(rows), dtype=bool)
        mask[at_amount] = True
        amount = pc.replace_with_mask(amount, pa.array(mask), pa.array(texts, pa.string()))
    columns["amount"] = amount
    return pa.table([columns[name] for name in LANDING_COLUMNS], schema=RENDERED_SCHEMA)
