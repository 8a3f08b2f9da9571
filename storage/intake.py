"""One-click reports (一键申报) written many at a time, straight on the DB-API cursor.

After a flood a county sends thousands of households to the same menu button within minutes.
The ORM path (``cases.create_case`` and friends) costs about 7 ms of CPU, four transactions and
about twenty statements per report. :class:`Statements` does the same for a whole batch of
reports in about eight statements: two reads first (the senders with their households,
villages, dialogue states and open cases in one; the deadline rules), outside the write
transaction, then the writes (references, cases, first timeline events, the message records
with their replies and, without Redis, the new dialogue states).

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
#: :meth:`Statements.queue_cases_numbered`'s transaction, until the database has handed the
#: reference out (the statements replace it with the case row's ``ref``). No template holds it.
REF_MARK = "SB\u2063REF\u2063"


class Numbered(NamedTuple):
    """Cases sent by :meth:`Statements.queue_cases_numbered`, whose references are read once committed."""

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
        self._case_ids = (f"SELECT nextval(pg_get_serial_sequence('{self._table(_case)}', 'id')) "
                          f"FROM generate_series(1, {self.mark})")
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
        values = []
        for row in rows:
            out = []
            for key, default, binder in plan:
                if key is not None:
                    value = row[key]
                elif default.is_callable:
                    value = default.arg(None)
                else:
                    value = default.arg
                out.append(value if binder is None or value is None else binder(value))
            values.append(tuple(out))
        return sql, values

    def _cast(self, column: Column) -> str:
        """The column's type for a cast of a bound value, without a length: a cast to
        ``VARCHAR(32)`` would cut a longer value short, where the insert refuses it."""
        return re.sub(r"\(\d+\)", "", column.type.compile(dialect=self.dialect))

    def _unnest(self, parts: list[tuple[Column, str | None, Any]], extra: Sequence[str] = ()) -> str:
        """``unnest(%s::type[], …)``: the rows of a batch as one array per column (and per
        ``extra`` type), so that a statement's text and its number of parameters do not depend on
        the batch's size: psycopg converts it once and prepares it once on the server, where a
        ``VALUES`` list of n rows is a new statement for each n (and over 50 parameters psycopg
        does not even cache its conversion: 0.3 ms a batch)."""
        # %b: psycopg's binary array format (its text format escapes every element with a regex).
        return "unnest(" + ", ".join(f"%b::{t}[]" for t in [*(self._cast(c) for c, _, _ in parts), *extra]) + ")"

    @staticmethod
    def _columns(plan: list, rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
        """The values of ``rows`` for ``plan`` (``_insert``'s), one list per column."""
        out = []
        for key, default, binder in plan:
            column = []
            for row in rows:
                if key is not None:
                    value = row[key]
                elif default.is_callable:
                    value = default.arg(None)
                else:
                    value = default.arg
                column.append(value if binder is None or value is None else binder(value))
            out.append(column)
        return out

    @functools.lru_cache(maxsize=16)  # noqa: B019
    def _unnest_insert_sql(self, table_name: str, keys: frozenset[str]) -> tuple[str, list]:
        table = _TABLES[table_name]
        parts = self._parts(table, keys)
        sql = (f"INSERT INTO {self._table(table)} ({', '.join(self._col(c) for c, _, _ in parts)}) "
               f"SELECT * FROM {self._unnest(parts)}")
        return sql, [(key, default, self._binder(column)) for column, key, default in parts]

    @functools.lru_cache(maxsize=16)  # noqa: B019
    def _numbered_cases_sql(self, keys: frozenset[str]) -> tuple[str, list]:
        """``INSERT`` of cases (the columns of ``keys`` but ``ref``) whose references the same
        statement takes from the day's counter row: ``base + ord`` (``ord`` 1…n, the row's place
        in the batch) formatted as :func:`storage.refs.format_ref` does."""
        parts = self._parts(_case, keys - {"ref"})
        aliases = [f"c{i}" for i in range(len(parts))]
        m = self.mark
        counter, day, last = self._table(_counter), self._col(_counter.c.day), self._col(_counter.c.last)
        seq = "(r.base + v.ord)::text"
        sql = (
            f"WITH r AS (UPDATE {counter} SET {last} = {last} + {m} WHERE {day} = {m} RETURNING {last} - {m} AS base) "
            f"INSERT INTO {self._table(_case)} ({', '.join(self._col(c) for c, _, _ in parts)}, {self._col(_case.c.ref)}) "
            f"SELECT {', '.join('v.' + a for a in aliases)}, "
            f"'SB' || {m} || '-' || lpad({seq}, greatest(4, length({seq})), '0') "
            f"FROM r CROSS JOIN {self._unnest(parts)} WITH ORDINALITY AS v({', '.join(aliases)}, ord) "
            f"RETURNING {self._col(_case.c.id)}, {self._col(_case.c.ref)}"
        )
        return sql, [(key, default, self._binder(column)) for column, key, default in parts]

    @functools.lru_cache(maxsize=16)  # noqa: B019
    def _with_refs_sql(self, table_name: str, keys: frozenset[str], text_key: str, suffix: str = "") -> tuple[str, list]:
        """``INSERT … SELECT`` of rows of ``keys`` where the :data:`REF_MARK` in ``text_key`` becomes
        the reference of the case of the row's ``case_id`` (a column of the table, or else a last
        array that is not written)."""
        table = _TABLES[table_name]
        parts = self._parts(table, keys if "case_id" in table.c else keys - {"case_id"})
        plan = [(key, default, self._binder(column)) for column, key, default in parts]
        aliases = [f"c{i}" for i in range(len(parts))]
        extra: list[str] = []
        if "case_id" in table.c:
            case_id = aliases[[key for key, _, _ in plan].index("case_id")]
        else:
            plan, extra, case_id = [*plan, ("case_id", None, None)], ["integer"], "case_id"
            aliases.append(case_id)
        ref = f"c.{self._quote(_case.c.ref.name)}"
        selected = [f"replace(v.{a}, {self.mark}, {ref})" if key == text_key else f"v.{a}"
                    for (_, key, _), a in zip(parts, aliases, strict=False)]
        sql = (
            f"INSERT INTO {self._table(table)} ({', '.join(self._col(c) for c, _, _ in parts)}) "
            f"SELECT {', '.join(selected)} FROM {self._unnest(parts, extra)} AS v({', '.join(aliases)}) "
            f"JOIN {self._table(_case)} c ON c.{self._quote(_case.c.id.name)} = v.{case_id}{suffix}"
        )
        return sql, plan

    def queue_cases_numbered(self, cur: Cursor, cases: Sequence[dict[str, Any]], *, now: dt.datetime,
                             ids: Sequence[int]) -> Numbered:
        """PostgreSQL: :meth:`take_refs` and :meth:`insert_cases` in statements sent without
        waiting (pipeline mode), so that the day's counter row, which every worker's batch
        updates, stays locked only while the database runs the transaction and not while a busy
        worker gets round to its next statement. The cases take the ``ids`` given; the day's
        counter row is created first when missing. Once the transaction is committed,
        :meth:`refs_of` the result gives each case's reference."""
        if len(ids) < len(cases):
            raise ValueError(f"{len(cases)} cases but only {len(ids)} ids")
        day = now.astimezone(CST).strftime("%Y%m%d")
        if day not in self._days:
            cur.execute(self._ensure_day, [day])
        rows = [self._case_row(c, now) | {"id": case_id} for c, case_id in zip(cases, ids, strict=False)]
        sql, plan = self._numbered_cases_sql(frozenset(rows[0]))
        numbered = cur.connection.cursor()
        n = len(rows)
        numbered.execute(sql, [n, day, n, day, *self._columns(plan, rows)])
        self._insert_events(cur, rows, cases, ids, now)
        return Numbered(numbered, day)

    def refs_of(self, numbered: Numbered) -> dict[int, str]:
        """``{case id: reference}`` of :meth:`queue_cases_numbered`'s cases, once committed."""
        refs = dict(numbered.cursor.fetchall())
        self._days.add(numbered.day)  # committed: the day's counter row exists
        return refs

    def record_answered_numbered(self, cur: Cursor, messages: Sequence[dict[str, Any]], *, now: dt.datetime) -> None:
        """:meth:`record_answered` in :meth:`queue_cases_numbered`'s transaction: each reply's
        :data:`REF_MARK` becomes its case's reference."""
        rows = [{**m, "msg_type": m["msg_type"][:32], "received_at": now} for m in messages]
        sql, plan = self._with_refs_sql(_inbound.name, frozenset(rows[0]), "reply")
        cur.execute(sql, [REF_MARK, *self._columns(plan, rows)])

    def put_states_numbered(self, cur: Cursor, states: Sequence[tuple[str, str, int]], *,
                            expires_at: dt.datetime | None) -> None:
        """:meth:`put_states` in :meth:`queue_cases_numbered`'s transaction: ``(key, value, case_id)``,
        each value's :data:`REF_MARK` becoming its case's reference."""
        if not states:
            return
        k, v, e = (self._col(c) for c in (_kv.c.key, _kv.c.value, _kv.c.expires_at))
        suffix = f" ON CONFLICT ({k}) DO UPDATE SET {v} = excluded.{v}, {e} = excluded.{e}"
        sql, plan = self._with_refs_sql(_kv.name, frozenset({"key", "value", "expires_at"}), "value", suffix)
        rows = [{"key": key, "value": value, "expires_at": expires_at, "case_id": case_id}
                for key, value, case_id in states]
        cur.execute(sql, [REF_MARK, *self._columns(plan, rows)])

    def _insert_rows(self, cur: Cursor, table: Table, rows: list[dict[str, Any]]) -> None:
        """``INSERT`` ``rows`` (no ``RETURNING``): on PostgreSQL one statement whatever their number
        (:meth:`_unnest`), elsewhere ``executemany``."""
        if self.pipelined:
            sql, plan = self._unnest_insert_sql(table.name, frozenset(rows[0]))
            cur.execute(sql, self._columns(plan, rows))
        else:
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
        ids for new cases (a sequence's values: the inserts need not wait for ``RETURNING``, and an
        id left unused is a gap no one sees). On PostgreSQL all three go in one round trip."""
        if not self.pipelined:
            return Reads(self.senders(cur, openids, app=app, state_prefix=state_prefix),
                         self.deadline_rules(cur, step), [])
        conn = cur.connection
        with conn.pipeline():
            cur.execute(*self._senders_query(openids, app, state_prefix))
            rules, ids = conn.cursor(), conn.cursor()
            rules.execute(self._rules, [step])
            if case_ids:
                ids.execute(self._case_ids, [case_ids])
            senders = {r.openid: r for r in (Sender(*self._read(row, self._sender_readers)) for row in cur.fetchall())}
            return Reads(senders, {region_id: days for region_id, days in rules.fetchall()},
                         [row[0] for row in ids.fetchall()] if case_ids else [])

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

    def insert_cases(self, cur: Cursor, cases: Sequence[dict[str, Any]], *, now: dt.datetime,
                     ids: Sequence[int] = ()) -> list[int]:
        """Insert the cases (each ``fields`` as ``cases.create_case`` takes them, plus ``ref``,
        ``inbound_key`` and the ``actor_*`` of its ``created`` event) and their first events; the
        new ids in order. ``ids``: theirs, taken beforehand (``Reads.case_ids``); otherwise the
        database hands them out."""
        if ids and len(ids) < len(cases):
            raise ValueError(f"{len(cases)} cases but only {len(ids)} ids")
        rows = [self._case_row(c, now) | ({"id": ids[i]} if ids else {}) for i, c in enumerate(cases)]
        if ids:
            self._insert_rows(cur, _case, rows)
            ids = list(ids[: len(cases)])
            self._insert_events(cur, rows, cases, ids, now)
            return ids
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
        self._insert_rows(cur, _event, [
            {"case_id": case_id, "at": now, "actor_kind": c["actor_kind"], "actor_id": c.get("actor_id"),
             "actor_name": c["actor_name"], "action": "created", "step": row["step"], "note": "",
             "data": {"channel": row["channel"], "urgent": row["urgent"]}}
            for case_id, c, row in zip(ids, cases, rows, strict=False)
        ])

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
