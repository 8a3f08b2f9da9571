"""The 5-second budget and WeChat's retries, per process.

WeChat waits 5 s for an answer and then retries, three times in all. :meth:`Inbox.handle`:

0. a known reporter's 一键申报 with no dialogue open is filed, recorded and answered in one
   transaction, together with the others arriving at the same time
   (``handlers.quick_report.GroupCommit``). Like step 1 it runs in the request's thread (it is
   database work only, about a millisecond) and a worker killed during it leaves nothing behind:
   WeChat's retry files the report. Anything else, and any retry of it, takes the steps below;
1. records the message (``handlers.routing.receive``: unique per sender and MsgId / event key);
2. a first copy is processed in a small thread pool and answered passively if it finishes within
   ``budget`` seconds (it normally takes milliseconds); otherwise the edge answers "success" at
   once and, when the work finishes, its reply goes to the outbox as a customer-service message;
3. a retry answers the reply stored with the first copy. If the first copy is still running it
   waits up to ``retry_wait`` seconds for it, then answers "success" and leaves the reply to the
   outbox. If the first copy died (nothing stored after ``LEASE_SECONDS``) the retry processes
   the message again; a report created from it is idempotent on its inbound key.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from handlers import routing
from handlers.context import Context
from handlers.quick_report import GroupCommit
from handlers.routing import Inbound

log = logging.getLogger(__name__)

#: Seconds of WeChat's 5 we allow ourselves before answering "success" (network time is the rest).
DEFAULT_BUDGET = 3.0
#: Seconds a retry waits for a first copy still being processed.
DEFAULT_RETRY_WAIT = 3.0


class Inbox:
    def __init__(self, ctx: Context, *, budget: float = DEFAULT_BUDGET, retry_wait: float = DEFAULT_RETRY_WAIT,
                 workers: int = 8):
        self.ctx = ctx
        self.budget = budget
        self.retry_wait = retry_wait
        self.quick = GroupCommit(ctx)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wechat-inbox")

    def handle(self, msg: Inbound) -> str | None:
        """The passive reply text for ``msg``, or None for "success"."""
        if routing.asks_to_report(msg):
            # The flood path: a known reporter's 一键申报 in one transaction (None: not that case).
            text = self.quick.file(msg)
            if text is not None:
                return text
        receipt = routing.receive(self.ctx, msg)
        if receipt.created:
            return self._process(receipt.inbound_id, msg, receipt.who)
        return self._retry(receipt.inbound_id, msg)

    def _work(self, inbound_id: int, msg: Inbound, who=None) -> str | None:
        reply = routing.dispatch(self.ctx, msg, who)
        passive = routing.complete(self.ctx, inbound_id, msg, reply)
        return reply.text if passive else None

    def _process(self, inbound_id: int, msg: Inbound, who=None) -> str | None:
        future = self.pool.submit(self._work, inbound_id, msg, who)
        try:
            return future.result(timeout=self.budget)
        except FutureTimeout:
            log.warning("%s not done within %.1fs: answering success, the outbox delivers", msg.kind, self.budget)
            stored = routing.defer(self.ctx, inbound_id)
            return stored.passive_text

    def _retry(self, inbound_id: int, msg: Inbound) -> str | None:
        deadline = time.monotonic() + self.retry_wait
        while True:
            stored = routing.poll(self.ctx, inbound_id)
            if stored.state == "done":
                return stored.passive_text
            if routing.stale(stored) and routing.take_over(self.ctx, inbound_id, stored):
                log.warning("first copy of a %s died; processing it again", msg.kind)
                return self._process(inbound_id, msg)
            if stored.state == "deferred":
                return None  # the first copy answered "success"; its reply goes to the outbox
            if time.monotonic() >= deadline:
                return routing.defer(self.ctx, inbound_id).passive_text
            time.sleep(0.05)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=False)
