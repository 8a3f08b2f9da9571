"""One-click reports (一键申报) written many at a time, in SQLAlchemy Core.

After a flood a county sends thousands of households to the same menu button within minutes.
The ORM path (``cases.create_case`` and friends) costs about 7 ms of CPU, four transactions and
about twenty statements per report. These statements are built once and each covers a whole
batch of reports: reporters, dialogue states, deadline rules, open cases, references, cases,
first timeline events, the message records with their replies, and (without Redis) the new
dialogue states: about ten statements per batch, whatever its size, in one transaction.

Every function takes a ``Connection`` already inside a transaction; nothing here commits. The
unique constraints are the guards, as everywhere: a retry of a message, or a copy racing on
another worker, fails with ``IntegrityError`` and the caller rolls the batch back.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from .models import (
    Case,
    CaseEvent,
    DeadlineRule,
    Household,
    InboundMessage,
    KeyValue,
    RefCounter,
    Region,
    WeChatUser,
)
from .refs import CST, format_ref
from .regions import nearest_rule

#: What a batch fails with when one of its messages was seen before (or a copy raced it).
Conflict = IntegrityError

_case = Case.__table__
_event = CaseEvent.__table__
_inbound = InboundMessage.__table__
_counter = RefCounter.__table__
_user = WeChatUser.__table__
_household = Household.__table__
_region = Region.__table__
_rule = DeadlineRule.__table__
_kv = KeyValue.__table__

#: The sender, the household they are bound to, and the village of either.
_REPORTERS = (
    select(
        _user.c.openid, _user.c.id, _user.c.household_id, _user.c.village_id, _user.c.name, _user.c.phone_enc,
        _user.c.consented_at, _household.c.head_name,
        _region.c.id.label("village_row_id"), _region.c.level.label("village_level"),
        _region.c.path.label("village_path"),
    )
    .select_from(
        _user.outerjoin(_household, _household.c.id == _user.c.household_id).outerjoin(
            _region, _region.c.id == func.coalesce(_household.c.village_id, _user.c.village_id)
        )
    )
    .where(_user.c.app == bindparam("app"), _user.c.openid.in_(bindparam("openids", expanding=True)))
)
_RULES = select(_rule.c.region_id, _rule.c.working_days).where(_rule.c.step == bindparam("step"))
# Each owner column on its own: with ``household_id … OR reporter_id …`` SQLite walks the whole
# open-queue index instead (see ``cases._owner_conditions``). Closed cases are filtered here.
_CASES_OF = {
    column: select(_case.c.id, _case.c.household_id, _case.c.reporter_id, _case.c.created_at, _case.c.closed_at)
    .where(_case.c[column].in_(bindparam("owners", expanding=True)))
    for column in ("household_id", "reporter_id")
}
_TAKE_SEQ = (
    update(_counter).where(_counter.c.day == bindparam("d")).values(last=_counter.c.last + bindparam("n"))
    .returning(_counter.c.last)
)
_NEW_DAY = insert(_counter)
_INSERT_CASES = insert(_case).returning(_case.c.id, sort_by_parameter_order=True)
_INSERT_EVENTS = insert(_event)
_INSERT_INBOUND = insert(_inbound)
_KV_GET = select(_kv.c.key, _kv.c.expires_at).where(_kv.c.key.in_(bindparam("keys", expanding=True)))


def reporters(conn: Connection, openids: Sequence[str], *, app: str = "oa") -> dict[str, Row]:
    """The senders that exist, by openid, with ``head_name`` (None when not bound, or the
    household is gone) and their village (``village_row_id``, ``village_level``, ``village_path``)."""
    rows = conn.execute(_REPORTERS, {"app": app, "openids": list(openids)})
    return {r.openid: r for r in rows}


def open_states(conn: Connection, keys: Sequence[str], now: dt.datetime) -> set[str]:
    """Which of ``keys`` hold a live value in the database key-value table (``DatabaseKV``)."""
    return {r.key for r in conn.execute(_KV_GET, {"keys": list(keys)})
            if r.expires_at is None or r.expires_at > now}


def deadline_rules(conn: Connection, step: str) -> dict[int | None, int]:
    """``{region_id (None: every region): working days}`` for ``step``."""
    return {r.region_id: r.working_days for r in conn.execute(_RULES, {"step": step})}


def rule_days(rules: dict[int | None, int], region_path: str) -> int | None:
    """As ``regions.deadline_days``, from the region's path (which holds the ids of its ancestors)."""
    return nearest_rule(rules, [int(x) for x in region_path.strip("/").split("/") if x])


def latest_open_cases(conn: Connection, owners: Sequence[tuple[int | None, int | None]]) -> list[int | None]:
    """For each ``(household_id, reporter_id)``: the id of its newest open case (a possible duplicate),
    as ``cases.open_case_for`` finds it."""
    newest: dict[tuple[str, int], Row] = {}
    for column, position in (("household_id", 0), ("reporter_id", 1)):
        wanted = sorted({o[position] for o in owners if o[position] is not None})
        if not wanted:
            continue
        for r in conn.execute(_CASES_OF[column], {"owners": wanted}):
            if r.closed_at is not None:
                continue
            key = (column, r[column])
            if key not in newest or (r.created_at, r.id) > (newest[key].created_at, newest[key].id):
                newest[key] = r
    out = []
    for household_id, reporter_id in owners:
        found = [newest.get(k) for k in (("household_id", household_id), ("reporter_id", reporter_id))]
        found = [r for r in found if r is not None]
        out.append(max(found, key=lambda r: (r.created_at, r.id)).id if found else None)
    return out


def take_refs(conn: Connection, now: dt.datetime, count: int) -> list[str]:
    """``count`` consecutive reference numbers of ``now``'s day (CST), as ``refs.next_ref`` hands
    them out one by one. The first batch of a day creates the counter row; a racing one fails
    with ``IntegrityError``."""
    day = now.astimezone(CST).strftime("%Y%m%d")
    last = conn.execute(_TAKE_SEQ, {"d": day, "n": count}).scalar()
    if last is None:
        conn.execute(_NEW_DAY, {"day": day, "last": count})
        last = count
    return [format_ref(day, seq) for seq in range(last - count + 1, last + 1)]


def insert_cases(conn: Connection, cases: Sequence[dict[str, Any]], *, now: dt.datetime) -> list[int]:
    """Insert the cases (each ``fields`` as ``cases.create_case`` takes them, plus ``ref``,
    ``inbound_key`` and the ``actor_*`` of its ``created`` event) and their first events; the
    new ids in order."""
    rows = []
    for c in cases:
        risk_types = list(c.get("risk_types") or [])
        rows.append({  # the columns left out (outcome, closed_at, merged_into_id …) start NULL or at their default
            "possible_duplicate_of_id": None,
            **{k: v for k, v in c.items() if not k.startswith("actor_")},
            "risk_types": risk_types, "risk_codes": "," + "".join(f"{x}," for x in risk_types),
            "created_at": now, "updated_at": now, "step_started_at": now,
        })
    ids = [r[0] for r in conn.execute(_INSERT_CASES, rows)]
    conn.execute(_INSERT_EVENTS, [
        {"case_id": case_id, "at": now, "actor_kind": c["actor_kind"], "actor_id": c.get("actor_id"),
         "actor_name": c["actor_name"], "action": "created", "step": row["step"], "note": "",
         "data": {"channel": row["channel"], "urgent": row["urgent"]}}
        for case_id, c, row in zip(ids, cases, rows, strict=True)
    ])
    return ids


def record_answered(conn: Connection, messages: Iterable[dict[str, Any]], *, now: dt.datetime) -> None:
    """The inbound messages (``source``, ``dedupe_key``, ``msg_type``, ``reply``, ``case_id``) with
    their stored replies: what ``claim_inbound`` + ``reply_once`` write in two transactions each.
    ``IntegrityError`` when one was seen before."""
    conn.execute(_INSERT_INBOUND, [{**m, "msg_type": m["msg_type"][:32], "received_at": now} for m in messages])


def put_states(conn: Connection, values: dict[str, str], *, expires_at: dt.datetime | None) -> None:
    """``DatabaseKV.set`` of several keys inside this transaction (insert or overwrite)."""
    if not values:
        return
    conn.execute(_upsert_state(conn.dialect.name),
                 [{"key": k, "value": v, "expires_at": expires_at} for k, v in values.items()])


@functools.cache
def _upsert_state(dialect_name: str):
    """``INSERT … ON CONFLICT (key) DO UPDATE`` in the dialect's own words, built once."""
    stmt = (postgresql if dialect_name == "postgresql" else sqlite).insert(_kv)
    return stmt.on_conflict_do_update(index_elements=[_kv.c.key],
                                      set_={"value": stmt.excluded.value, "expires_at": stmt.excluded.expires_at})
