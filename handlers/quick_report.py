"""一键申报 under a flood: known reporters' one-click reports filed together, one commit for many.

What :func:`handlers.dialogue.start_report` → ``_file`` → :func:`handlers.report.submit` and the
edge's bookkeeping (``routing.receive`` / ``complete``) do for one report in four transactions,
:func:`file_batch` does for a batch in one read and one write transaction: the same case,
``created`` event, reference, stored reply and dialogue state, through the same write path
(:func:`handlers.report.file`, a batch of one for ``submit``), committed before any reply is
returned.

:class:`GroupCommit` is the classic group commit of a database log: the first report to arrive
leads and files whatever is waiting in one transaction; reports arriving meanwhile wait and go
together in the next one. An idle service files each report alone (no added wait); under a flood
the batches grow by themselves and one commit (and one turn at SQLite's write lock) serves many,
a leader waiting 2 ms for more when its last batch was not alone (``GroupCommit.gather``).
The reports of a batch are answered as soon as it is committed; with Redis, the leader saves the
batch's dialogue states after handing over to the next leader.

Anything out of the ordinary is left to the general path (the result is None): an unknown or
unregistered sender, an open dialogue, a second report of the same household or sender in one
batch, a retry or a racing copy (the batch is refused and then tried one report at a time), any
error (logged).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from storage import Connection, IntegrityError
from storage.db import is_sqlite, reading, writing
from storage.households import HouseholdPlace
from storage.inbound import record_answered
from storage.kv import DatabaseKV, get_many, put_many, set_many
from storage.models import utcnow
from storage.people import Sender, senders

from . import texts
from .chat_types import Inbound
from .context import Context
from .dialogue_state import STATE_TTL
from .dialogue_state import state_key as _key
from .receipts import answered_record
from .report import MAX_NAME, PHONE_RE, Ack, ReportInput, ack_message, file

log = logging.getLogger(__name__)

#: Reports filed together at most (a bound on the time one commit makes the first of them wait).
MAX_BATCH = 64
#: How long a busy leader waits for more reports to join its batch (``GroupCommit.gather``).
GATHER = 0.002
#: … in steps of this long, and stops after a step in which none came (one step of 2 ms: see
#: ``GroupCommit.gather``).
GATHER_STEP = 0.002


@dataclass
class _Filed:
    text: str
    state_key: str
    state: str


def _reply(ref: str, due: dt.datetime) -> str:
    """What ``dialogue_state.file_case`` answers a report without risk types: the acknowledgement, then the menu."""
    return ack_message(ref, created=True, urgent=False, due_at=due) + "\n\n" + _ask_risk()


@functools.cache
def _ask_risk() -> str:
    return texts.ASK_RISK.format(menu=texts.risk_menu())


def file_batch(ctx: Context, msgs: list[Inbound], *, state_in_db: bool,
               busy: frozenset[str] = frozenset()) -> list[_Filed | None]:
    """File every report of ``msgs`` it can in one transaction; None for the rest (among them the
    senders in ``busy``: a dialogue is open in a key-value store other than the database).

    The senders are read first (on SQLite outside the write transaction, without the write lock;
    on PostgreSQL in it, which saves a connection and three round trips); the reports chosen go to
    :func:`handlers.report.file`, the one write path, whose transaction also records each message
    with its reply and, when the dialogue states live in the database, the states that continue
    the conversation.

    Raises (``IntegrityError`` above all: a retry, or a copy racing on another worker) when the
    batch as a whole cannot be committed: then nothing of it was written.
    """
    now = utcnow()
    results: list[_Filed | None] = [None] * len(msgs)
    if is_sqlite(ctx.engine):  # read before taking the write lock, which every writer waits for
        with reading(ctx.engine) as conn:
            _file_batch(ctx, conn, msgs, results, now, state_in_db=state_in_db, busy=busy, write=None)
    else:  # PostgreSQL: one transaction, one connection, fewer round trips
        with writing(ctx.engine) as conn:
            _file_batch(ctx, conn, msgs, results, now, state_in_db=state_in_db, busy=busy, write=conn)
    return results


def _file_batch(ctx: Context, conn: Connection, msgs: list[Inbound], results: list[_Filed | None],
                now: dt.datetime, *, state_in_db: bool, busy: frozenset[str], write: Connection | None) -> None:
    found = senders(conn, [m.openid for m in msgs], state_prefix=_key("") if state_in_db else None)
    chosen = _choose(ctx, found, msgs, now, busy=busy)
    if not chosen:
        return

    def record(conn: Connection, acks: list) -> None:
        messages, states = [], {}
        for (i, _), ack in zip(chosen, acks, strict=True):
            if not isinstance(ack, Ack):  # refused: the general path says why
                raise _Refused
            text = _reply(ack.ref, ack.due_at)
            state = json.dumps({"flow": "details", "stage": "risk", "case_id": ack.case_id, "ref": ack.ref,
                                "at": time.time()}, ensure_ascii=False)
            msg = msgs[i]
            messages.append({"source": msg.openid, "dedupe_key": msg.dedupe_key, "msg_type": msg.kind,
                             "reply": answered_record(text), "case_id": ack.case_id})
            states[_key(msg.openid)] = state
            results[i] = _Filed(text, _key(msg.openid), state)
        record_answered(conn, messages, now=now)
        if state_in_db:
            put_many(conn, states, expires_at=now + dt.timedelta(seconds=STATE_TTL))

    try:
        known = {w.household_id: HouseholdPlace(w.household_id, w.head_name, w.village_row_id, w.village_name,
                                                w.village_level, w.village_path)
                 for w in found.values() if w.household_id is not None and w.head_name is not None}
        file(ctx, [r for _, r in chosen], now=now, record=record, conn=write, households=known)
    except BaseException:
        results[:] = [None] * len(msgs)
        raise


class _Refused(IntegrityError):
    """A report of the batch was refused: the batch rolls back as on a conflict."""

    def __init__(self):
        super().__init__("a report of the batch was refused", None, Exception())


def _choose(ctx: Context, found: dict[str, Sender], msgs: list[Inbound], now: dt.datetime, *,
            busy: frozenset[str]) -> list[tuple[int, ReportInput]]:
    """The reports of ``msgs`` this path files, as ``(index, report)``: known, registered senders
    with no dialogue open, one report per sender and household."""
    chosen: list[tuple[int, ReportInput]] = []
    seen_users: set[int] = set()
    seen_households: set[int] = set()
    for i, msg in enumerate(msgs):
        who = found.get(msg.openid)
        if (who is None or who.dialogue_open(now) or msg.openid in busy or who.id in seen_users
                or who.household_id in seen_households):
            continue
        if who.household_id is not None:
            if who.head_name is None:  # the household row is gone
                continue
        elif not (who.name and who.village_id is not None and who.consented_at is not None):
            continue  # not registered yet: the short registration first
        if who.village_row_id is None or who.village_level != "village":
            continue
        phone = ctx.cipher.decrypt(who.phone_enc) if who.household_id is None and who.phone_enc else None
        if phone and not PHONE_RE.match(phone):
            continue
        seen_users.add(who.id)
        if who.household_id is not None:
            seen_households.add(who.household_id)
        chosen.append((i, ReportInput(
            channel="wechat", inbound_key=msg.inbound_key, household_id=who.household_id, reporter_id=who.id,
            reporter_name=(who.name or who.head_name or "")[:MAX_NAME], reporter_phone=phone,
            village_id=who.village_row_id, actor_name=who.name,
        )))
    return chosen


@dataclass(eq=False)
class _Job:
    msg: Inbound
    done: threading.Event = field(default_factory=threading.Event)
    batch: list[_Job] | None = None  #: the batch this job leads (itself first), if it leads one
    result: str | None = None


class GroupCommit:
    """Files the one-click reports of this process's threads together (see the module docstring)."""

    def __init__(self, ctx: Context, *, max_batch: int = MAX_BATCH, max_leaders: int = 1,
                 gather: float = GATHER, gather_step: float = GATHER_STEP):
        self.ctx = ctx
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Job] = []
        self._leaders = 0
        #: Seconds a leader waits at most for more reports before filing its batch, when the last
        #: batch had more than one (the service is busy; an idle one files each report at once),
        #: much as PostgreSQL's ``commit_delay`` does with ``commit_siblings``; it looks every
        #: ``gather_step`` and stops after a step in which none came. Each batch has a fixed cost
        #: (round trips, a commit). Reports over HTTP with a plain wait of ``gather`` (2026-12-01, 3
        #: rounds each, alternating):
        #: PostgreSQL + Redis 1042-1058/s at 1.15-1.17 ms of the workers' CPU each with 2 ms,
        #: 944-1034 with 1 ms, 944-962 with 0.5 ms, 840-892 at 1.30-1.38 ms with none; SQLite
        #: 1215-1332/s with 2 ms, 1212-1303 with 1 ms, 1138-1172 with none. Looking every 0.5 ms
        #: and stopping at the first step without arrivals spares the wait where no one else can
        #: come (four threads in process, all four in every batch: 1123-1140/s against 1039 with
        #: the plain wait, 1733 with none), but over HTTP on PostgreSQL + Redis with the real
        #: model it gave medians of 40, 36, 38 % of the echo against 42, 44, 39 % with one step of
        #: 2 ms: under a flood more reports come than threads, so one step of 2 ms it is.
        self.gather, self.gather_step = gather, gather_step
        self._last_size = 1
        #: Batches in flight at once in this process. One: on SQLite a second would only wait for
        #: the write lock; on PostgreSQL + Redis two were measured over HTTP (2026-12-01) at 30 % of
        #: the echo against 37 % with one: smaller batches, more CPU per report (1.5 against 1.3 ms).
        self.max_leaders = max_leaders
        #: How many batches of each size were tried, and how many reports this path filed (what
        #: the flood tests and benchmarks look at; the rest went to the general path).
        self.batch_sizes: Counter[int] = Counter()
        self.filed = 0

    @property
    def _state_in_db(self) -> bool:
        kv = self.ctx.kv
        return isinstance(kv, DatabaseKV) and kv.engine is self.ctx.engine

    def file(self, msg: Inbound) -> str | None:
        """The acknowledgement of ``msg``'s report once committed, or None: the general path decides."""
        job = _Job(msg)
        with self._lock:
            self._waiting.append(job)
            if self._leaders < self.max_leaders:
                self._leaders += 1
                job.batch = self._take()
        if job.batch is None:
            job.done.wait()  # until its batch is filed, or it is handed the next batch to lead
        if job.batch is not None:
            self._lead(job.batch)
        return job.result

    def _take(self) -> list[_Job]:
        """The next batch: what is waiting, oldest first (with ``_lock`` held)."""
        batch = self._waiting[: self.max_batch]
        del self._waiting[: self.max_batch]
        return batch

    def _lead(self, batch: list[_Job]) -> None:
        if self.gather and self._last_size > 1 and len(batch) < self.max_batch:
            # Busy (the last batch was not alone): let the reports on their way join this one, as
            # long as they keep coming.
            deadline = time.monotonic() + self.gather
            while len(batch) < self.max_batch and time.monotonic() < deadline:
                time.sleep(self.gather_step)
                with self._lock:
                    room = self.max_batch - len(batch)
                    more = self._waiting[:room]
                    del self._waiting[:room]
                if not more:
                    break
                batch = batch + more
        self._last_size = len(batch)
        states: dict[str, str] = {}
        try:
            states = self._run(batch)
        finally:
            with self._lock:
                if self._waiting:  # hand over: the first one waiting leads the next batch
                    nxt = self._waiting[0]
                    nxt.batch = self._take()
                    nxt.done.set()
                else:
                    self._leaders -= 1
            for job in batch:
                job.done.set()
        # Redis gets the batch's dialogue states while the next batch is on its way: a villager
        # answers the acknowledgement seconds later at the earliest, and this leader's own reply
        # waits for it.
        self._save_states(states)
        if self._state_in_db:  # the states went into the key-value table: purge the expired now and then
            self.ctx.kv.maintain()

    def _save_states(self, states: dict[str, str]) -> None:
        if not states:
            return
        try:
            set_many(self.ctx.kv, states, ttl=STATE_TTL)
        except Exception:  # the cases are filed and acknowledged; only the follow-up turns are lost
            log.exception("saving the dialogue states after %d reports failed", len(states))

    def _run(self, batch: list[_Job]) -> dict[str, str]:
        """Files ``batch`` and sets each job's result; returns the dialogue states still to be saved
        in a key-value store other than the database (:meth:`_save_states`)."""
        self.batch_sizes[len(batch)] += 1
        msgs = [job.msg for job in batch]
        in_db = self._state_in_db
        busy: frozenset[str] = frozenset()
        if not in_db:  # the dialogue states are in Redis: one MGET for the batch
            try:
                open_now = get_many(self.ctx.kv, [_key(m.openid) for m in msgs])
            except Exception:
                log.exception("reading the dialogue states of %d reports failed; the general path takes them", len(msgs))
                return {}
            busy = frozenset(m.openid for m, state in zip(msgs, open_now, strict=True) if state is not None)
        try:
            results = file_batch(self.ctx, msgs, state_in_db=in_db, busy=busy)
        except Exception as exc:
            if not self._is_conflict(exc):
                log.exception("filing %d one-click report(s) together failed", len(batch))
            # A retry or a racing copy refuses the whole batch: file the others one by one.
            results = [self._one(msg, in_db, busy) for msg in msgs] if len(batch) > 1 else [None]
        for job, filed in zip(batch, results, strict=True):
            if filed is not None:
                job.result = filed.text
                self.filed += 1
        return {} if in_db else {f.state_key: f.state for f in results if f is not None}

    def _one(self, msg: Inbound, in_db: bool, busy: frozenset[str]) -> _Filed | None:
        try:
            return file_batch(self.ctx, [msg], state_in_db=in_db, busy=busy)[0]
        except Exception as exc:
            if not self._is_conflict(exc):
                log.exception("filing a one-click report failed; the general path takes it")
            return None

    def _is_conflict(self, exc: BaseException) -> bool:
        return isinstance(exc, IntegrityError)
