"""The outbox worker (``huinong worker``): delivers queued customer-service and template messages.

Each round claims a batch of due rows (``storage.outbox.claim_batch``: several workers never take
the same row), sends each one outside any database transaction, and records the result:

- sent → ``sent``;
- WeChat unreachable, HTTP 5xx, timeouts, ``-1`` (system busy), ``45009`` (rate limit) → tried
  again later with backoff (``storage.outbox.BACKOFF``), up to ``max_attempts``;
- a customer-service text outside the 48-hour window (``45015``) or over the reply quota
  (``45047``) → the row's ``fallback_template`` if it has one, else ``failed`` with an error
  starting ``followup:`` so staff phone the villager instead;
- a template without a configured template id, or one WeChat does not know (``40037``) → its
  ``fallback_text`` as a customer-service text;
- anything else WeChat refuses (unsubscribed ``43004``, bad openid ``40003`` …) → ``failed``.

Delivery is at least once: a worker killed between WeChat's "ok" and ``mark_sent`` leaves the row
``sending`` and another worker sends it again after ``stale_after`` seconds.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from dataclasses import dataclass, field

import requests
from wechatpy.exceptions import WeChatClientException

from handlers import chat_texts as T
from storage import session_scope
from storage.outbox import claim_batch, mark_failed, mark_sent

from .outbound import make_client, send_template, send_text

log = logging.getLogger(__name__)

TRANSIENT = {None, -1, 45009, 40001, 42001}
#: Our configuration, not the message: wrong AppID / AppSecret, server IP not whitelisted.
CONFIGURATION = {40002, 40013, 40125, 40164, 41002, 41004}
WINDOW_CLOSED = {45015, 45047}
UNKNOWN_TEMPLATE = {40037}


@dataclass
class Stats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    fallbacks: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: Stats) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.fallbacks += other.fallbacks
        self.errors += other.errors

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.failed

    def __str__(self) -> str:
        return f"sent {self.sent}, retry later {self.retried}, failed {self.failed} (fallbacks used: {self.fallbacks})"


class _Retry(Exception):
    pass


class _Fail(Exception):
    pass


def _errcode(exc: Exception) -> int | None:
    return getattr(exc, "errcode", None)


def _describe(exc: Exception) -> str:
    if isinstance(exc, WeChatClientException):
        if exc.errcode is None and getattr(exc, "response", None) is not None:
            # wechatpy raises HTTP errors with errcode and errmsg None: record the status instead.
            return f"HTTP {exc.response.status_code}"
        return f"{exc.errcode} {exc.errmsg}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


class OutboxWorker:
    def __init__(self, services, *, client=None, worker_id: str | None = None, batch: int = 20,
                 max_attempts: int = 8, stale_after: int = 300):
        self.services = services
        self.settings = services.settings
        self.engine = services.engine
        self._client = client
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.batch = batch
        self.max_attempts = max_attempts
        self.stale_after = stale_after

    @property
    def client(self):
        if self._client is None:
            self._client = make_client(self.settings, self.services.ctx.kv)
        return self._client

    def templates(self) -> dict[str, str]:
        return {"urgent_case": self.settings.wechat_template_urgent, "outcome": self.settings.wechat_template_outcome}

    # --- one round ------------------------------------------------------------------------------

    def run_once(self, *, now: dt.datetime | None = None) -> Stats:
        """Claim one batch of due messages and deliver them.

        Without an access token (WeChat down, wrong AppSecret, IP not whitelisted) nothing is
        claimed: the messages wait, untouched, for the next round.
        """
        try:
            self.client.access_token  # noqa: B018 - fetched (or read from the shared store) first
        except (requests.RequestException, WeChatClientException) as exc:
            log.error("no WeChat access token, delivering nothing this round: %s", _describe(exc))
            return Stats(errors=[f"access token: {_describe(exc)}"])
        with session_scope(self.engine) as session:
            rows = claim_batch(session, worker=self.worker_id, limit=self.batch, stale_after=self.stale_after, now=now)
        stats = Stats()
        for row in rows:
            stats.add(self._one(row, now))
        return stats

    def drain(self, *, now: dt.datetime | None = None, max_rounds: int = 1000) -> Stats:
        """Rounds until nothing is due (what ``huinong worker --once`` does)."""
        total = Stats()
        for _ in range(max_rounds):
            stats = self.run_once(now=now)
            total.add(stats)
            if stats.handled == 0:
                break
        return total

    def run_forever(self, *, interval: float, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                stats = self.drain()
                if stats.handled:
                    log.info("outbox: %s", stats)
            except Exception:  # keep the worker alive through a database blip
                log.exception("outbox round failed")
            stop.wait(interval)

    # --- one message ----------------------------------------------------------------------------

    def _one(self, row, now) -> Stats:
        stats = Stats()
        try:
            used_fallback = self.deliver(row)
        except _Retry as exc:
            with session_scope(self.engine) as session:
                mark_failed(session, row, error=str(exc), retry=True, max_attempts=self.max_attempts, now=now)
            if row.status == "failed":
                stats.failed += 1
            else:
                stats.retried += 1
            stats.errors.append(str(exc))
            return stats
        except _Fail as exc:
            with session_scope(self.engine) as session:
                mark_failed(session, row, error=str(exc), retry=False, now=now)
            stats.failed += 1
            stats.errors.append(str(exc))
            log.warning("outbox message %s failed for good: %s", row.id, exc)
            return stats
        except Exception as exc:  # a bug or a malformed row: retry later, keep the batch going
            log.exception("outbox message %s could not be sent", row.id)
            with session_scope(self.engine) as session:
                mark_failed(session, row, error=_describe(exc), retry=True, max_attempts=self.max_attempts, now=now)
            stats.retried += 1
            stats.errors.append(_describe(exc))
            return stats
        with session_scope(self.engine) as session:
            mark_sent(session, row, now=now)
        stats.sent += 1
        stats.fallbacks += int(used_fallback)
        return stats

    def deliver(self, row) -> bool:
        """Send one outbox row; True when a fallback was used. Raises _Retry or _Fail."""
        payload = row.payload or {}
        if row.kind == "text":
            return self._text(row.recipient, str(payload.get("content", "")), payload.get("fallback_template"))
        if row.kind == "template":
            return self._template(row.recipient, payload)
        raise _Fail(f"unknown outbox kind {row.kind!r}")

    def _call(self, fn, *args):
        try:
            return fn(self.client, *args)
        except requests.RequestException as exc:
            raise _Retry(_describe(exc)) from exc
        except WeChatClientException as exc:
            if _errcode(exc) in TRANSIENT or _errcode(exc) in CONFIGURATION:
                raise _Retry(_describe(exc)) from exc
            raise

    def _text(self, openid: str, content: str, fallback_template: dict | None) -> bool:
        if not content:
            raise _Fail("empty text")
        try:
            self._call(send_text, openid, content)
            return False
        except WeChatClientException as exc:
            if _errcode(exc) in WINDOW_CLOSED:
                if fallback_template:
                    self._template(openid, {**fallback_template, "fallback_text": ""})
                    return True
                raise _Fail(f"followup: {_describe(exc)}; the villager must be contacted another way") from exc
            raise _Fail(_describe(exc)) from exc

    def _template(self, openid: str, payload: dict) -> bool:
        name = str(payload.get("template", ""))
        template_id = self.templates().get(name) or str(payload.get("template_id", ""))
        data = payload.get("data") or {}
        if template_id:
            try:
                self._call(send_template, openid, template_id, data, payload.get("url"))
                return False
            except WeChatClientException as exc:
                if _errcode(exc) not in UNKNOWN_TEMPLATE:
                    raise _Fail(_describe(exc)) from exc
                log.warning("template %s (%s) unknown to WeChat: sending the text instead", name, template_id)
        text = payload.get("fallback_text") or _template_text(name, data)
        if not text:
            raise _Fail(f"template {name!r} has no template id and no fallback text")
        self._text(openid, text, None)
        return True


def _template_text(name: str, data: dict) -> str:
    """A customer-service text carrying what a template would have said."""
    values = {k: (v.get("value") if isinstance(v, dict) else v) for k, v in data.items()}
    try:
        if name == "urgent_case":
            return T.URGENT_FALLBACK.format(ref=values.get("ref", ""), village=values.get("village", ""),
                                            reasons=values.get("reasons", "") or "情况紧急")
        if name == "outcome":
            return T.OUTCOME_FALLBACK.format(ref=values.get("ref", ""), status=values.get("status", ""))
    except (KeyError, IndexError):
        return ""
    return ""
