"""The JSON Schemas of the nine event types (events/) and the operational database's four
entities (entities/): the generator's tests validate what it writes against them, and the
pipeline's rule for the commerce fields (spec.COMMERCE_PATTERNS, spec.REQUIRED_FIELDS) is read
from them, so each is stated once."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

ROOT = Path(__file__).parent
COMMERCE_FIELDS = ("product_id", "search_query", "transaction_id", "amount")


@cache
def _load(kind: str, name: str) -> dict:
    return json.loads((ROOT / kind / f"{name}.json").read_text())


def event_schema(event_type: str) -> dict:
    """An event type's schema (its `$ref` to events/event.json resolved by `registry`)."""
    return _load("events", event_type.lower())


def entity_schema(name: str) -> dict:
    return _load("entities", name)


def registry():
    """A `referencing` registry of every schema, by its $id, for jsonschema's validators."""
    from referencing import Registry, Resource

    resources = []
    for path in sorted(ROOT.glob("*/*.json")):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


def commerce_patterns() -> dict[str, str | None]:
    """Each commerce field's form where present (a regular expression; None: any non-empty
    text), from events/event.json."""
    properties = _load("events", "event")["properties"]
    return {name: properties[name].get("pattern") for name in COMMERCE_FIELDS}


def required_fields(event_types: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The commerce fields each event type requires, from its schema."""
    return {
        t: tuple(f for f in event_schema(t)["required"] if f in COMMERCE_FIELDS)
        for t in event_types
    }
