"""The Lambda reconciliation: the speed layer's store against the batch layer's Iceberg
table, day by day, and the two streaming engines against each other.

The batch layer is the truth. Per day of the batch table (those the stream covered):
- events: every batch event is in the store or set aside as LATE_EVENT (the speed layer's
  rule), and the store holds nothing the batch has not: `missing` and `extra` are 0;
- sessions: for every user without a late event, each event has the same session_id and
  event_seq in both (a late event legitimately changes its user's sessions in the batch);
- funnel: per step of spec.FUNNEL_STEPS, events in the store plus those set aside equal the
  batch's.
The store's UUIDs are compared as text (lower case, as Iceberg's event_id text is); the
samples name a few ids of each difference.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from etl_poc.logic.spec import FUNNEL_STEPS, LATE_EVENT
from etl_poc.stream.store import EVENTS, SET_ASIDE, Store

SAMPLE = 5
KEY = ["event_id", "session_id", "event_seq"]


def stream_events(store: Store, day: date | None = None) -> pl.DataFrame:
    """The store's events (of one day), their ids as text."""
    where = f" WHERE event_date = '{day.isoformat()}'" if day else ""
    return pl.from_arrow(
        store.query(
            f"SELECT lower(toString(event_id)) AS event_id, user_id, session_id, "
            f"toInt64(event_seq) AS event_seq, event_type, event_date FROM {EVENTS}{where}"
        )
    )


def set_aside(store: Store) -> pl.DataFrame:
    return pl.from_arrow(
        store.query(f"SELECT reason, lower(event_id) AS event_id FROM {SET_ASIDE} FINAL")
    )


def batch_events(catalog, engine: str = "polars", day: date | None = None) -> pl.DataFrame:
    """The batch layer's events (of one day): the Iceberg table of one lineage."""
    from pyiceberg.expressions import AlwaysTrue, EqualTo

    table = catalog.load_table(f"{engine}.clickstream_events")
    columns = ("event_id", "user_id", "session_id", "event_seq", "event_type", "event_date")
    where = EqualTo("event_date", day.isoformat()) if day else AlwaysTrue()
    frame = pl.from_arrow(table.scan(row_filter=where, selected_fields=columns).to_arrow())
    return frame.with_columns(
        pl.col("event_id").str.to_lowercase(), pl.col("event_seq").cast(pl.Int64)
    )


def _sample(frame: pl.DataFrame) -> list[str]:
    return frame["event_id"].sort().head(SAMPLE).to_list()


def reconcile(stream: pl.DataFrame, aside: pl.DataFrame, batch: pl.DataFrame) -> pl.DataFrame:
    """One row per day the stream covers: the counts of each side and each difference, with
    sample ids; `agrees` when every difference is 0."""
    late = aside.filter(pl.col("reason") == LATE_EVENT).select("event_id").unique()
    days = stream.select("event_date").unique()
    batch = batch.join(days, on="event_date", how="semi")
    late_ids = late.join(batch.select("event_id"), on="event_id", how="semi")
    late_users = batch.join(late_ids, on="event_id", how="semi").select("user_id").unique()
    rows = []
    for (day,) in days.sort("event_date").iter_rows():
        ours = stream.filter(pl.col("event_date") == day)
        theirs = batch.filter(pl.col("event_date") == day)
        accounted = pl.concat([ours.select("event_id"), late_ids])
        missing = theirs.join(accounted, on="event_id", how="anti")
        extra = ours.join(theirs, on="event_id", how="anti")
        settled = theirs.join(late_users, on="user_id", how="anti")
        differ = settled.select(KEY).join(ours.select(KEY), on=KEY, how="anti")
        late_today = theirs.join(late_ids, on="event_id", how="semi")
        steps = {}
        for step in FUNNEL_STEPS:
            in_batch = theirs.filter(pl.col("event_type") == step).height
            in_stream = ours.filter(pl.col("event_type") == step).height
            in_stream += late_today.filter(pl.col("event_type") == step).height
            steps[step] = in_stream - in_batch
        rows.append(
            {
                "day": day,
                "batch_events": theirs.height,
                "stream_events": ours.height,
                "late": late_today.height,
                "missing": missing.height,
                "extra": extra.height,
                "session_differences": differ.height,
                "batch_sessions": theirs["session_id"].n_unique(),
                "stream_sessions": ours["session_id"].n_unique(),
                "funnel_differences": sum(abs(v) for v in steps.values()),
                "samples": ", ".join(_sample(missing) + _sample(extra) + _sample(differ)),
            }
        )
    frame = pl.DataFrame(rows)
    if frame.is_empty():
        return frame
    differences = ["missing", "extra", "session_differences", "funnel_differences"]
    return frame.with_columns(agrees=pl.sum_horizontal(differences) == 0)


def engines_agree(
    first: pl.DataFrame, first_aside: pl.DataFrame, second: pl.DataFrame, second_aside: pl.DataFrame
) -> dict:
    """Two stores compared: the same events stored or set aside as late, and, for the users
    with no late event in either, the same (event_id, session_id, event_seq). (Which events
    are late depends on where each engine's micro-batches happened to end.)"""
    late = [
        a.filter(pl.col("reason") == LATE_EVENT).select("event_id")
        for a in (first_aside, second_aside)
    ]
    accounted = [
        pl.concat([f.select("event_id"), x]).unique()
        for f, x in zip((first, second), late, strict=True)
    ]
    only_first = accounted[0].join(accounted[1], on="event_id", how="anti")
    only_second = accounted[1].join(accounted[0], on="event_id", how="anti")
    ids = pl.concat(late)
    late_users = pl.concat(
        [f.join(ids, on="event_id", how="semi").select("user_id") for f in (first, second)]
    )
    late_users = late_users.unique()  # a late event is stored by the engine that took it
    settled = [f.join(late_users, on="user_id", how="anti").select(KEY) for f in (first, second)]
    differ = pl.concat(
        [
            settled[0].join(settled[1], on=KEY, how="anti"),
            settled[1].join(settled[0], on=KEY, how="anti"),
        ]
    )
    return {
        "events": (first.height, second.height),
        "late": (late[0].height, late[1].height),
        "only_in_first": only_first.height,
        "only_in_second": only_second.height,
        "session_differences": differ.height,
        "samples": _sample(only_first) + _sample(only_second) + _sample(differ),
        "agree": only_first.is_empty() and only_second.is_empty() and differ.is_empty(),
    }
