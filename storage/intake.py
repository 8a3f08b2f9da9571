"""One-click reports (一键申报) written many at a time, straight on the DB-API cursor.

After a flood a county sends thousands of households to the same menu button within minutes.
The ORM path (``cases.create_case`` and friends) costs about 7 ms of CPU, four transactions and
about twenty statements per report. :class:`Statements` does the same for a whole batch of
reports in a handful of statements: the reads first (the senders with their households,
villages, dialogue states and open cases in one; the deadline rules), outside the write
transaction, then the writes (references, cases, first timeline events, the message records
with their replies and, without Redis, the new dialogue states).

On PostgreSQL (psycopg's pipeline mode) the reads go in one round trip, with ids for the new
cases from the table's sequence, and the whole write transaction in another: one statement
takes the references from the day's counter row and inserts the cases, their events, the
message records and the dialogue states (:meth:`Statements.queue_batch`): the replies and states
carry :data:`REF_MARK` where the reference goes, which it replaces, and the COMMIT goes with
it. The counter row, which every batch of every worker updates, is so locked only while the
database runs the transaction. Every row set is sent as one array per column (``unnest``), so a
statement's text does not depend on the batch's size and is prepared once.

The statements are SQL text built once per database dialect from the tables' own metadata and
run on the driver's cursor: SQLAlchemy's execution machinery costs 40–60 µs a statement, which
under a flood was a third of the CPU of a report. What SQLAlchemy would do to each value is kept:
every column's bind and result processors come from its type (``dialect_impl``), so a datetime,
a JSON list or a boolean is stored and read exactly as the ORM stores and reads it, and a column
a batch leaves out gets its Python-side default as a Core ``INSERT`` gives it
(``tests/test_quick_report.py`` compares both paths column by column, on SQLite and PostgreSQL).

Nothing here commits: :func:`storage.db.dbapi_writing` does. The unique constraints are the
guards, as everywhere: a retry of a message, or a copy racing on another worker, fails with the
driver's ``IntegrityError`` (:attr:`Statements.conflict`) and the caller rolls the batch back.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Column, Table
from sqlalchemy.engine import Dialect, Engine
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

_case: Table = Case.__table__
_event: Table = CaseEvent.__table__
_inbound: Table = InboundMessage.__table__
_counter: Table = RefCounter.__table__
_user: Table = WeChatUser.__table__
_household: Table = Household.__table__
_region: Table = Region.__table__
_rule: Table = DeadlineRule.__table__
_kv: Table = KeyValue.__table__
_TABLES = {t.name: t for t in (_case, _event, _inbound, _kv)}


class Sender(NamedTuple):
    """The sender of a message, the household they are bound to (``head_name`` None: not bound,
    or the household is gone), the village of either, their dialogue state in the key-value
    table (when asked for) and the newest open case of their household and of themselves."""

    openid: str
    id: int
    household_id: int | None
    village_id: int | None
    name: str
    phone_enc: str | None
    consented_at: dt.datetime | None
    head_name: str | None
    village_row_id: int | None
    village_level: str | None
    village_path: str | None
    state_key: str | None
    state_expires_at: dt.datetime | None
    household_case_id: int | None
    household_case_at: dt.datetime | None
    own_case_id: int | None
    own_case_at: dt.datetime | None

    def dialogue_open(self, now: dt.datetime) -> bool:
        """A live dialogue state (``DatabaseKV.get`` would return it)."""
        return self.state_key is not None and (self.state_expires_at is None or self.state_expires_at > now)

    @property
    def open_case_id(self) -> int | None:
        """The newest open case of the household or the sender (a possible duplicate), as
        ``cases.open_case_for`` finds it: newest ``created_at``, then highest id."""
        found = [(at, cid) for cid, at in ((self.household_case_id, self.household_case_at),
                                           (self.own_case_id, self.own_case_at)) if cid is not None]
        return max(found)[1] if found else None


Cursor = Any  #: a DB-API 2 cursor (sqlite3, psycopg)

#: What stands for a case's reference in a reply or a dialogue state written by
#: :meth:`Statements.queue_batch`'s statement, until the database has handed the
#: reference out (the statements replace it with the case row's ``ref``). No template holds it.
REF_MARK = "SB\u2063REF\u2063"


class Numbered(NamedTuple):
    """Cases sent by :meth:`Statements.queue_batch`, whose references are read once committed."""

    cursor: Any
    day: str


class Reads(NamedTuple):
    """What a batch reads before it writes (:meth:`Statements.reads`)."""

    senders: dict[str, Sender]  #: by openid, those that exist
    rules: dict[int | None, int]  #: the deadline rules of the first step (``deadline_rules``)
    case_ids: list[int]  #: ids taken from the case table's sequence (PostgreSQL; [] elsewhere)


def rule_days(rules: dict[int | None, int], region_path: str) -> int | None:
    """As ``regions.deadline_days``, from the region's path (which holds the ids of its ancestors)."""
    return nearest_rule(rules, [int(x) for x in region_path.strip("/").split("/") if x])


@functools.cache
def _for_dialect(dialect: Dialect) -> Statements:
    return Statements(dialect)


def statements(engine: Engine) -> Statements:
    """The statements for ``engine``'s database, built on first use."""
    return _for_dialect(engine.dialect)


class Statements:
    """The flood path's statements in one dialect's words (see the module docstring)."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self.mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self._quote = dialect.identifier_preparer.quote
        self.returning_many = dialect.name == "postgresql"  # psycopg: executemany(..., returning=True)
        #: psycopg's pipeline mode: statements are sent without waiting for each one's result, so the
        #: reads of a batch cost one round trip (and :func:`storage.db.dbapi_writing` sends the
        #: inserts and the COMMIT in one more).
        self.pipelined = dialect.name == "postgresql"
        #: What a batch fails with when a unique constraint refuses it (a message seen before, a copy
        #: racing on another worker, the day's first reference taken twice): the driver's error, or
        #: SQLAlchemy's around it when it comes from the commit.
        self.conflict: tuple[type[BaseException], ...] = (IntegrityError, dialect.loaded_dbapi.IntegrityError)
        self._sender_readers = self._readers([
            _user.c.openid, _user.c.id, _user.c.household_id, _user.c.village_id, _user.c.name, _user.c.phone_enc,
            _user.c.consented_at, _household.c.head_name, _region.c.id, _region.c.level, _region.c.path,
            _kv.c.key, _kv.c.expires_at, _case.c.id, _case.c.created_at, _case.c.id, _case.c.created_at])
        kv = self._table(_kv)
        k, v, e = (self._col(c) for c in (_kv.c.key, _kv.c.value, _kv.c.expires_at))
        self._upsert_state = (
            f"INSERT INTO {kv} ({k}, {v}, {e}) VALUES ({self._marks(3)}) "
            f"ON CONFLICT ({k}) DO UPDATE SET {v} = excluded.{v}, {e} = excluded.{e}"
        )
        self._state_binders = (None, self._binder(_kv.c.value), self._binder(_kv.c.expires_at))
        counter, day, last = self._table(_counter), self._col(_counter.c.day), self._col(_counter.c.last)
        self._take_seq = f"UPDATE {counter} SET {last} = {last} + {self.mark} WHERE {day} = {self.mark} RETURNING {last}"
        self._new_day = f"INSERT INTO {counter} ({day}, {last}) VALUES ({self._marks(2)})"
        self._ensure_day = f"INSERT INTO {counter} ({day}, {last}) VALUES ({self.mark}, 0) ON CONFLICT ({day}) DO NOTHING"
        self._days: set[str] = set()  #: days whose counter row this process knows to exist
        self._rules = (f"SELECT {self._col(_rule.c.region_id)}, {self._col(_rule.c.working_days)} "
                       f"FROM {self._table(_rule)} WHERE {self._col(_rule.c.step)} = {self.mark}")

    # --- building blocks ------------------------------------------------------------------------

    def _table(self, table: Table) -> str:
        return self._quote(table.name)

    def _col(self, column: Column, alias: str | None = None) -> str:
        return (alias + "." if alias else "") + self._quote(column.name)

    def _marks(self, n: int) -> str:
        return ", ".join([self.mark] * n)

    def _binder(self, column: Column) -> Callable[[Any], Any] | None:
        return column.type.dialect_impl(self.dialect).bind_processor(self.dialect)

    def _reader(self, column: Column) -> Callable[[Any], Any] | None:
        return column.type.dialect_impl(self.dialect).result_processor(self.dialect, None)

    def _readers(self, columns: list[Column]) -> list[Callable[[Any], Any] | None]:
        return [self._reader(c) for c in columns]

    @staticmethod
    def _read(row: Sequence[Any], readers: list) -> list[Any]:
        return [value if fn is None or value is None else fn(value) for value, fn in zip(row, readers, strict=True)]

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one Statements per dialect, kept for the process
    def _senders_sql(self, n: int, with_state: bool) -> str:
        """The one read of a batch (``n`` openids): senders, households, villages, dialogue states
        and the newest open case of each household and sender, built once per length."""
        col = self._col
        u, h, r, k = "u", "h", "r", "k"

        def newest(owner: Column, outer: str, what: Column) -> str:
            # Each owner column on its own: with ``household_id … OR reporter_id …`` SQLite walks the
            # whole open-queue index instead (see ``cases._owner_conditions``).
            return (f"(SELECT {col(what, 'c')} FROM {self._table(_case)} c WHERE {col(owner, 'c')} = {outer} "
                    f"AND {col(_case.c.closed_at, 'c')} IS NULL "
                    f"ORDER BY {col(_case.c.created_at, 'c')} DESC, {col(_case.c.id, 'c')} DESC LIMIT 1)")

        own = [col(c, u) for c in (_user.c.openid, _user.c.id, _user.c.household_id, _user.c.village_id,
                                   _user.c.name, _user.c.phone_enc, _user.c.consented_at)]
        state = [col(_kv.c.key, k), col(_kv.c.expires_at, k)] if with_state else ["NULL", "NULL"]
        cases = [newest(_case.c.household_id, col(_user.c.household_id, u), _case.c.id),
                 newest(_case.c.household_id, col(_user.c.household_id, u), _case.c.created_at),
                 newest(_case.c.reporter_id, col(_user.c.id, u), _case.c.id),
                 newest(_case.c.reporter_id, col(_user.c.id, u), _case.c.created_at)]
        cols = ", ".join(own + [col(_household.c.head_name, h)] + [col(c, r) for c in (
            _region.c.id, _region.c.level, _region.c.path)] + state + cases)
        sql = (
            f"SELECT {cols} FROM {self._table(_user)} {u} "
            f"LEFT OUTER JOIN {self._table(_household)} {h} ON {col(_household.c.id, h)} = {col(_user.c.household_id, u)} "
            f"LEFT OUTER JOIN {self._table(_region)} {r} ON {col(_region.c.id, r)} = "
            f"coalesce({col(_household.c.village_id, h)}, {col(_user.c.village_id, u)}) "
        )
        if with_state:
            sql += f"LEFT OUTER JOIN {self._table(_kv)} {k} ON {col(_kv.c.key, k)} = {self.mark} || {col(_user.c.openid, u)} "
        if self.pipelined:  # one array: the same statement (prepared once) for any number of senders
            return sql + f"WHERE {col(_user.c.app, u)} = {self.mark} AND {col(_user.c.openid, u)} = ANY(%b::text[])"
        return sql + f"WHERE {col(_user.c.app, u)} = {self.mark} AND {col(_user.c.openid, u)} IN ({self._marks(n)})"

    @staticmethod
    def _parts(table: Table, keys: frozenset[str]) -> list[tuple[Column, str | None, Any]]:
        """The columns an ``INSERT`` of ``keys`` writes: those in ``keys`` and every other one with a
        Python-side default (as Core fills them), each as ``(column, key or None, default or None)``."""
        parts = []
        for column in table.columns:
            if column.key in keys:
                parts.append((column, column.key, None))
            elif column.default is not None and not column.primary_key:
                parts.append((column, None, column.default))
        return parts

    @functools.lru_cache(maxsize=16)  # noqa: B019
    def _insert(self, table_name: str, keys: frozenset[str], returning_id: bool) -> tuple[str, list]:
        """``INSERT`` of the columns of :meth:`_parts`, and how to make each row's values:
        ``[(key, default, binder)]``."""
        table = _TABLES[table_name]
        parts = self._parts(table, keys)
        names = ", ".join(self._col(c) for c, _, _ in parts)
        sql = f"INSERT INTO {self._table(table)} ({names}) VALUES ({self._marks(len(parts))})"
        if returning_id:
            sql += f" RETURNING {self._col(table.c.id)}"
        return sql, [(key, default, self._binder(column)) for column, key, default in parts]

    def _rows(self, table: Table, rows: list[dict[str, Any]], *, returning_id: bool = False) -> tuple[str, list]:
        sql, plan = self._insert(table.name, frozenset(rows[0]), returning_id)
        return sql, [tuple(self._value(row, *step) for step in plan) for row in rows]

    @staticmethod
    def _value(row: dict[str, Any], key: str | None, default: Any, binder: Callable[[Any], Any] | None) -> Any:
        """One column's bound value for ``row``: its own, or the column's Python-side default."""
        if key is not None:
            value = row[key]
        elif default.is_callable:
            value = default.arg(None)
        else:
            value = default.arg
        return value if binder is None or value is None else binder(value)

    def _cast(self, column: Column) -> str:
        """The column's type for a cast of a bound value, without a length: a cast to
        ``VARCHAR(32)`` would cut a longer value short, where the insert refuses it."""
        return re.sub(r"\(\d+\)", "", column.type.compile(dialect=self.dialect))

    def _unnest(self, parts: list[tuple[Column, str | None, Any]]) -> str:
        """``unnest(%s::type[], …)``: the rows of a batch as one array per column, so that a
        statement's text and its number of parameters do not depend on the batch's size: psycopg
        converts it once and prepares it once on the server, where a ``VALUES`` list of n rows is
        a new statement for each n (and over 50 parameters psycopg does not even cache its
        conversion: 0.3 ms a batch)."""
        # %b: psycopg's binary array format (its text format escapes every element with a regex).
        return "unnest(" + ", ".join(f"%b::{self._cast(c)}[]" for c, _, _ in parts) + ")"

    @staticmethod
    def _columns(plan: list, rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
        """The values of ``rows`` for ``plan`` (``_insert``'s), one list per column."""
        return [[Statements._value(row, *step) for row in rows] for step in plan]

    @functools.lru_cache(maxsize=8)  # noqa: B019
    def _batch_sql(self, case_keys: frozenset[str], event_keys: frozenset[str], inbound_keys: frozenset[str],
                   with_states: bool) -> tuple[str, tuple[list, ...]]:
        """PostgreSQL: the whole write of a batch as one statement, and the plans of its arrays
        (cases, events, message records, dialogue states). ``r`` takes ``n`` references from the
        day's counter row; ``v`` is the batch, one array per column; ``c`` inserts the cases with
        their references, ``base + ord`` formatted as :func:`storage.refs.format_ref` does; ``e``,
        ``i`` and ``s`` insert the events, the message records and the dialogue states of the cases
        ``c`` inserted, where :data:`REF_MARK` in a reply or a state becomes the case's reference."""
        m, quote = self.mark, self._quote
        groups = {"c": self._parts(_case, case_keys - {"ref"}), "e": self._parts(_event, event_keys - {"case_id"}),
                  "i": self._parts(_inbound, inbound_keys - {"case_id"}),
                  "s": self._parts(_kv, frozenset({"key", "value", "expires_at"})) if with_states else []}
        aliases = {g: [f"{g}{k}" for k in range(len(parts))] for g, parts in groups.items()}
        case_id = aliases["c"][[c.key for c, _, _ in groups["c"]].index("id")]
        cid, cref = f"c.{quote(_case.c.id.name)}", f"c.{quote(_case.c.ref.name)}"

        def names(g: str) -> str:
            return ", ".join(self._col(c) for c, _, _ in groups[g])

        def values(g: str, text_key: str | None = None) -> str:
            return ", ".join(f"replace(v.{a}, {m}, {cref})" if c.key == text_key else f"v.{a}"
                             for (c, _, _), a in zip(groups[g], aliases[g], strict=True))

        counter, day, last = self._table(_counter), self._col(_counter.c.day), self._col(_counter.c.last)
        seq = "(r.base + v.ord)::text"
        joined = f"FROM c JOIN v ON v.{case_id} = {cid}"
        every = [p for g in "ceis" for p in groups[g]]
        sql = (
            f"WITH r AS (UPDATE {counter} SET {last} = {last} + {m} WHERE {day} = {m} RETURNING {last} - {m} AS base), "
            f"v AS (SELECT * FROM {self._unnest(every)} WITH ORDINALITY "
            f"AS v({', '.join(a for g in 'ceis' for a in aliases[g])}, ord)), "
            f"c AS (INSERT INTO {self._table(_case)} ({names('c')}, {self._col(_case.c.ref)}) "
            f"SELECT {values('c')}, 'SB' || {m} || '-' || lpad({seq}, greatest(4, length({seq})), '0') "
            f"FROM r CROSS JOIN v RETURNING {self._col(_case.c.id)}, {self._col(_case.c.ref)}), "
            f"e AS (INSERT INTO {self._table(_event)} ({self._col(_event.c.case_id)}, {names('e')}) "
            f"SELECT {cid}, {values('e')} {joined}), "
            f"i AS (INSERT INTO {self._table(_inbound)} ({self._col(_inbound.c.case_id)}, {names('i')}) "
            f"SELECT {cid}, {values('i', 'reply')} {joined})"
        )
        if with_states:
            k, val, e = (self._col(c) for c in (_kv.c.key, _kv.c.value, _kv.c.expires_at))
            sql += (f", s AS (INSERT INTO {self._table(_kv)} ({names('s')}) SELECT {values('s', 'value')} {joined} "
                    f"ON CONFLICT ({k}) DO UPDATE SET {val} = excluded.{val}, {e} = excluded.{e})")
        sql += f" SELECT {cid}, {cref} FROM c"
        plans = tuple([(key, default, self._binder(column)) for column, key, default in groups[g]] for g in "ceis")
        return sql, plans

    def queue_batch(self, cur: Cursor, cases: Sequence[dict[str, Any]], messages: Sequence[dict[str, Any]],
                    states: Sequence[tuple[str, str]], *, now: dt.datetime, ids: Sequence[int],
                    expires_at: dt.datetime | None) -> Numbered:
        """PostgreSQL: :meth:`take_refs`, :meth:`insert_cases`, :meth:`record_answered` and
        :meth:`put_states` (``states``: ``(key, value)``, none when the states go elsewhere) as one
        statement (:meth:`_batch_sql`), sent without waiting (pipeline mode): the day's counter
        row, which every worker's batch updates, stays locked only while the database runs the
        transaction, not while a busy worker gets round to its next statement. ``messages[k]`` and
        ``states[k]`` belong to ``cases[k]``, which takes ``ids[k]``; replies and states carry
        :data:`REF_MARK` where the reference goes. The day's counter row is created first when
        missing. Once the transaction is committed, :meth:`refs_of` the result gives each case's
        reference."""
        if len(ids) < len(cases):
            raise ValueError(f"{len(cases)} cases but only {len(ids)} ids")
        ids = ids[: len(cases)]  # the read took one per message; some were not filed here
        day = now.astimezone(CST).strftime("%Y%m%d")
        if day not in self._days:
            cur.execute(self._ensure_day, [day])
        rows = [self._case_row(c, now) | {"id": case_id} for c, case_id in zip(cases, ids, strict=True)]
        events = self._event_rows(rows, cases, ids, now)
        records = [{**m, "msg_type": m["msg_type"][:32], "received_at": now} for m in messages]
        kept = [{"key": key, "value": value, "expires_at": expires_at} for key, value in states]
        sql, plans = self._batch_sql(frozenset(rows[0]), frozenset(events[0]), frozenset(records[0]), bool(kept))
        n = len(rows)
        params: list[Any] = [n, day, n]
        for plan, group in zip(plans, (rows, events, records, kept), strict=True):
            params += self._columns(plan, group)
        params += [day, REF_MARK] + ([REF_MARK] if kept else [])
        numbered = cur.connection.cursor()
        numbered.execute(sql, params)
        return Numbered(numbered, day)

    def refs_of(self, numbered: Numbered) -> dict[int, str]:
        """``{case id: reference}`` of :meth:`queue_batch`'s cases, once committed."""
        refs = dict(numbered.cursor.fetchall())
        self._days.add(numbered.day)  # committed: the day's counter row exists
        return refs

    def _insert_rows(self, cur: Cursor, table: Table, rows: list[dict[str, Any]]) -> None:
        """``INSERT`` ``rows`` (no ``RETURNING``) with ``executemany``."""
        cur.executemany(*self._rows(table, rows))

    # --- the reads ------------------------------------------------------------------------------

    def senders(self, cur: Cursor, openids: Sequence[str], *, app: str = "oa",
                state_prefix: str | None = None) -> dict[str, Sender]:
        """The senders of ``openids`` that exist, by openid, in one statement. ``state_prefix``:
        read their dialogue states from the key-value table under ``state_prefix + openid``."""
        cur.execute(*self._senders_query(openids, app, state_prefix))
        return {r.openid: r for r in (Sender(*self._read(row, self._sender_readers)) for row in cur.fetchall())}

    def _senders_query(self, openids: Sequence[str], app: str, state_prefix: str | None) -> tuple[str, list]:
        params = ([state_prefix] if state_prefix is not None else []) + [app]
        if self.pipelined:
            return self._senders_sql(0, state_prefix is not None), [*params, list(openids)]
        return self._senders_sql(len(openids), state_prefix is not None), [*params, *openids]

    def deadline_rules(self, cur: Cursor, step: str) -> dict[int | None, int]:
        """``{region_id (None: every region): working days}`` for ``step``."""
        cur.execute(self._rules, [step])
        return {region_id: days for region_id, days in cur.fetchall()}

    def reads(self, cur: Cursor, openids: Sequence[str], *, step: str, app: str = "oa",
              state_prefix: str | None = None, case_ids: int = 0) -> Reads:
        """:meth:`senders` and :meth:`deadline_rules` of ``step``, and on PostgreSQL ``case_ids``
        ids for new cases (a sequence's values: the inserts need not wait for ``RETURNING``). On
        PostgreSQL all three in one statement (:meth:`_reads_sql`)."""
        if not self.pipelined:
            return Reads(self.senders(cur, openids, app=app, state_prefix=state_prefix),
                         self.deadline_rules(cur, step), [])
        prefix = [state_prefix] if state_prefix is not None else []
        with cur.connection.pipeline():
            # The planner would plan this statement anew for every batch (0.37 ms of the server's
            # CPU, more than running it) because its plan for the openids' actual array looks
            # cheaper than the generic one; the generic plan is the same index lookups. For this
            # transaction only.
            cur.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            cur.execute(self._reads_sql(state_prefix is not None), [step, case_ids, *prefix, app, list(openids)])
            rows = cur.fetchall()
        if not rows:  # no sender known: nothing to file (and no ids taken)
            return Reads({}, {}, [])
        senders = {r.openid: r for r in (Sender(*self._read(row[2:], self._sender_readers)) for row in rows)}
        return Reads(senders, {region_id: days for region_id, days in rows[0][0] or []}, list(rows[0][1] or []))

    @functools.lru_cache(maxsize=4)  # noqa: B019
    def _reads_sql(self, with_state: bool) -> str:
        """PostgreSQL: :meth:`_senders_sql` with, in front of each row, the deadline rules of a step
        (``[[region_id, working_days], …]``) and an array of ids for new cases from the table's
        sequence (an id left unused is a gap no one sees): uncorrelated subqueries, run once for
        the statement. One statement, one round trip."""
        rule = self._table(_rule)
        rules = (f"(SELECT json_agg(json_build_array({self._col(_rule.c.region_id)}, {self._col(_rule.c.working_days)})) "
                 f"FROM {rule} WHERE {self._col(_rule.c.step)} = {self.mark})")
        ids = (f"(SELECT array_agg(nextval(pg_get_serial_sequence('{self._table(_case)}', 'id'))) "
               f"FROM generate_series(1, {self.mark}::integer))")
        senders = self._senders_sql(0, with_state)
        assert senders.startswith("SELECT ")
        return f"SELECT {rules}, {ids}, " + senders[len("SELECT "):]

    # --- the writes -----------------------------------------------------------------------------

    def take_refs(self, cur: Cursor, now: dt.datetime, count: int) -> list[str]:
        """``count`` consecutive reference numbers of ``now``'s day (CST), as ``refs.next_ref`` hands
        them out one by one. The first batch of a day creates the counter row; a racing one fails
        with ``IntegrityError``."""
        day = now.astimezone(CST).strftime("%Y%m%d")
        cur.execute(self._take_seq, [count, day])
        row = cur.fetchone()
        if row is None:
            cur.execute(self._new_day, [day, count])
            last = count
        else:
            last = row[0]
        return [format_ref(day, seq) for seq in range(last - count + 1, last + 1)]

    def insert_cases(self, cur: Cursor, cases: Sequence[dict[str, Any]], *, now: dt.datetime) -> list[int]:
        """Insert the cases (each ``fields`` as ``cases.create_case`` takes them, plus ``ref``,
        ``inbound_key`` and the ``actor_*`` of its ``created`` event) and their first events; the
        new ids in order. (PostgreSQL's flood path uses :meth:`queue_batch` instead.)"""
        rows = [self._case_row(c, now) for c in cases]
        sql, values = self._rows(_case, rows, returning_id=True)
        if self.returning_many:
            cur.executemany(sql, values, returning=True)
            ids = [cur.fetchone()[0]]
            while cur.nextset():
                ids.append(cur.fetchone()[0])
        else:  # sqlite3's executemany returns no rows: one statement per case (microseconds each)
            ids = []
            for v in values:
                cur.execute(sql, v)
                ids.append(cur.fetchone()[0])
        self._insert_events(cur, rows, cases, ids, now)
        return ids

    @staticmethod
    def _case_row(c: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
        risk_types = list(c.get("risk_types") or [])
        return {  # the columns left out (outcome, closed_at, merged_into_id …) start NULL or at their default
            "possible_duplicate_of_id": None,
            **{k: v for k, v in c.items() if not k.startswith("actor_")},
            "risk_types": risk_types, "risk_codes": "," + "".join(f"{x}," for x in risk_types),
            "created_at": now, "updated_at": now, "step_started_at": now,
        }

    def _insert_events(self, cur: Cursor, rows: list[dict[str, Any]], cases: Sequence[dict[str, Any]],
                       ids: Sequence[int], now: dt.datetime) -> None:
        """The ``created`` event of each case."""
        self._insert_rows(cur, _event, self._event_rows(rows, cases, ids, now))

    @staticmethod
    def _event_rows(rows: list[dict[str, Any]], cases: Sequence[dict[str, Any]], ids: Sequence[int],
                    now: dt.datetime) -> list[dict[str, Any]]:
        return [
            {"case_id": case_id, "at": now, "actor_kind": c["actor_kind"], "actor_id": c.get("actor_id"),
             "actor_name": c["actor_name"], "action": "created", "step": row["step"], "note": "",
             "data": {"channel": row["channel"], "urgent": row["urgent"]}}
            for case_id, c, row in zip(ids, cases, rows, strict=True)
        ]

    def record_answered(self, cur: Cursor, messages: Iterable[dict[str, Any]], *, now: dt.datetime) -> None:
        """The inbound messages (``source``, ``dedupe_key``, ``msg_type``, ``reply``, ``case_id``) with
        their stored replies: what ``claim_inbound`` + ``reply_once`` write in two transactions each.
        ``IntegrityError`` when one was seen before."""
        self._insert_rows(cur, _inbound, [{**m, "msg_type": m["msg_type"][:32], "received_at": now} for m in messages])

    def put_states(self, cur: Cursor, values: dict[str, str], *, expires_at: dt.datetime | None) -> None:
        """``DatabaseKV.set`` of several keys inside this transaction (insert or overwrite)."""
        if not values:
            return
        _, bind_value, bind_expires = self._state_binders
        expires = expires_at if expires_at is None or bind_expires is None else bind_expires(expires_at)
        cur.executemany(self._upsert_state, [
            (k, v if bind_value is None else bind_value(v), expires) for k, v in values.items()])
