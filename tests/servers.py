"""Real server processes for the multi-process tests and the benchmarks.

- :class:`ServerProcess`: ``huinong serve`` (gunicorn) or ``huinong worker`` (or any command) on a
  free loopback port, configured only through ``HUINONG_*`` environment variables as in
  production; :meth:`ServerProcess.start` waits until it answers (``/healthz`` or a route), prints
  its output if it dies, and :meth:`ServerProcess.stop` always ends it (SIGTERM, then SIGKILL).
- :class:`~tests.http_client.HttpClient` (in tests/http_client.py): keep-alive HTTP to one of them,
  with the part of Flask's test client interface :class:`tests.wechat_user.WeChatUser` uses.
- :func:`redis_db`: a Redis database number on 127.0.0.1:6379 taken for one test (a lock key in
  it, so two test runs never share one), emptied before and after.
- :func:`env_for`: the environment of a server process for given settings.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.http_client import HttpClient

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HUINONG = str(BIN / "huinong")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(settings, **extra: Any) -> dict[str, str]:
    """``HUINONG_*`` variables for every field of ``settings`` (a ``bot.settings.Settings``), on top
    of this process's environment minus any ``HUINONG_*`` it has."""
    import dataclasses

    env = {k: v for k, v in os.environ.items() if not k.startswith("HUINONG_")}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        env["HUINONG_" + f.name.upper()] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    for key, value in extra.items():
        env[key if key.startswith("HUINONG_") else "HUINONG_" + key.upper()] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServerError(RuntimeError):
    pass


class ServerProcess:
    """One child process, its output in a log file (read back when it fails or on request)."""

    def __init__(self, args: list[str], env: Mapping[str, str], *, port: int | None = None, name: str = "server",
                 ready_path: str | None = "/healthz", ready_text: str | None = None, cwd: Path | None = None):
        self.args = args
        self.env = dict(env)
        self.port = port
        self.name = name
        self.ready_path = ready_path
        self.ready_text = ready_text
        self.cwd = cwd or ROOT
        fd, log = tempfile.mkstemp(prefix=f"huinong-{name}-", suffix=".log")
        os.close(fd)
        self.log = Path(log)
        self.proc: subprocess.Popen | None = None
        self.clients: list[HttpClient] = []

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self._fh = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=self.cwd, stdout=self._fh,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            if self._ready():
                return
            time.sleep(0.1)
        raise ServerError(f"{self.name} not ready after {timeout:.0f}s:\n{self.output()}")

    def _ready(self) -> bool:
        if self.ready_text is not None:
            return self.ready_text in self.output()
        if self.port is None or self.ready_path is None:
            return True
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            conn.request("GET", self.ready_path)
            status = conn.getresponse().status
            conn.close()
        except OSError:
            return False
        return status < 500 or self.ready_path == "/healthz"  # /healthz is 503 without an index

    def stop(self, timeout: float = 15.0) -> None:
        for client in self.clients:
            client.close_all()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if getattr(self, "_fh", None) is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
        if exc[0] is not None:
            sys.stderr.write(f"--- output of {self.name} ---\n{self.output()[-8000:]}\n")

    # --- inspection ------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        try:
            return self.log.read_text("utf-8", "replace")
        except OSError:
            return ""

    def children(self) -> list[int]:
        """PIDs of the direct children (gunicorn's workers)."""
        if self.proc is None:
            return []
        try:
            raw = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in raw.split()]

    def wait_workers(self, count: int, timeout: float = 60.0) -> list[int]:
        """Wait until gunicorn has ``count`` workers and each has answered (``/healthz`` loads the
        app in whichever worker takes the connection, so ask a few times)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kids = self.children()
            if len(kids) >= count:
                return kids
            time.sleep(0.1)
        raise ServerError(f"{self.name}: {len(self.children())} of {count} workers after {timeout:.0f}s")

    def client(self, **kw) -> HttpClient:
        assert self.port is not None
        client = HttpClient(self.port, **kw)
        self.clients.append(client)
        return client


def serve(settings, *, workers: int = 2, threads: int = 4, name: str = "serve", timeout: float = 90.0,
          ready_path: str = "/healthz", **env: Any) -> ServerProcess:
    """``huinong serve`` on a free port for ``settings``; started and answering ``ready_path``
    (``/healthz`` loads the index in the worker that answers it)."""
    port = free_port()
    proc = ServerProcess(
        [HUINONG, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
         "--threads", str(threads)],
        env_for(settings, **env), port=port, name=name, ready_path=ready_path,
    )
    proc.start(timeout)
    proc.wait_workers(workers, timeout)
    return proc


def worker(settings, *, interval: float = 0.2, batch: int = 20, name: str = "worker", **env: Any) -> ServerProcess:
    """``huinong worker`` for ``settings``; started (its banner printed)."""
    proc = ServerProcess(
        [HUINONG, "worker", "--interval", str(interval), "--batch", str(batch)],
        env_for(settings, **env), name=name, ready_text="outbox worker ",
    )
    return proc.start(60.0)


# --- Redis ---------------------------------------------------------------------------------------

LOCK_KEY = "huinong-test-lock"


def redis_available() -> str | None:
    try:
        import redis

        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=2).ping()
        return None
    except Exception as exc:  # any failure means "not available"
        return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def redis_db(first: int = 1, last: int = 15, ttl: int = 900) -> Iterator[str]:
    """A Redis URL on a database number nobody else holds; empty before and after use.

    Database 0 is left to the other tests. The lock key expires by itself if the run is killed.
    """
    import redis

    me = uuid.uuid4().hex
    for n in range(first, last + 1):
        conn = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=n, socket_timeout=5)
        if not conn.set(LOCK_KEY, me, nx=True, ex=ttl):
            conn.close()
            continue
        try:
            _empty(conn)
            yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{n}"
        finally:
            _empty(conn)
            if conn.get(LOCK_KEY) == me.encode():
                conn.delete(LOCK_KEY)
            conn.close()
        return
    raise ServerError(f"every Redis database {first}..{last} is taken by another test run")


def _empty(conn) -> None:
    keys = [k for k in conn.scan_iter(count=1000) if k != LOCK_KEY.encode()]
    for i in range(0, len(keys), 500):
        conn.delete(*keys[i:i + 500])


# --- a deployment: the in-process side of a multi-process test -------------------------------------


class Deployment:
    """Settings, services (for setting up and checking the database), the demo county and the
    loopback fake WeChat API of a test that runs real server and worker processes.

    ``mode`` is the WeChat message mode (safe by default, as in production); ``redis_url`` empty
    keeps the embedded default (the database's key-value table).
    """

    def __init__(self, tmp_path, db_url: str | None = None, *, api=None, redis_url: str = "", mode: str = "safe",
                 **overrides: Any):
        from tests.wechat_user import WeChatApp

        values = dict(overrides)
        if api is not None:
            values.update(wechat_api_base=api.base_url, wechat_appid=api.appid, wechat_secret=api.secret)
        if redis_url:
            values["redis_url"] = redis_url
        self.api = api
        self.world = WeChatApp(tmp_path, db_url, mode=mode, **values)
        self.settings = self.world.settings
        self.services = self.world.services
        self.ctx = self.world.ctx
        self.processes: list[ServerProcess] = []

    # --- processes ---------------------------------------------------------------------------

    def serve(self, *, workers: int = 2, threads: int = 4, name: str = "serve", ready_path: str = "/healthz",
              **env: Any) -> ServerProcess:
        proc = serve(self.settings, workers=workers, threads=threads, name=name, ready_path=ready_path, **env)
        self.processes.append(proc)
        return proc

    def worker(self, *, interval: float = 0.2, batch: int = 20, name: str = "worker", **env: Any) -> ServerProcess:
        proc = worker(self.settings, interval=interval, batch=batch, name=name, **env)
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.processes:
            proc.stop()
        self.world.close()

    def dump(self) -> str:
        """Every process's output (for a failing test's report)."""
        return "\n".join(f"--- {p.name} ---\n{p.output()[-6000:]}" for p in self.processes)

    # --- villagers ---------------------------------------------------------------------------

    def user(self, openid: str, target: ServerProcess | HttpClient | None):
        """A villager's WeChat talking to ``target`` (a server process or a client of one; None: only
        building requests)."""
        from tests.wechat_user import WeChatUser

        client = target.client() if isinstance(target, ServerProcess) else target
        return WeChatUser(client, token=self.settings.wechat_token, openid=openid, mode=self.world.mode,
                          aes_key=self.world.aes_key or None, appid=self.world.APPID)

    def bound_openids(self, count: int, prefix: str = "o-load") -> list[str]:
        """``count`` households (spread over the demo villages), each with a WeChat user bound to it."""
        from sqlmodel import select

        from storage import session_scope
        from storage.households import create_household
        from storage.models import Region
        from storage.people import bind_household, get_or_create_wechat_user

        openids = [f"{prefix}-{i}" for i in range(count)]
        with session_scope(self.services.engine) as s:
            villages = list(s.exec(select(Region).where(Region.level == "village").order_by(Region.id)))
            for i, openid in enumerate(openids):
                hh = create_household(s, self.ctx.cipher, head_name=f"{prefix}户{i}"[:32],
                                      village_id=villages[i % len(villages)].id)
                bind_household(s, get_or_create_wechat_user(s, openid=openid), hh)
        return openids

    # --- what the database holds -----------------------------------------------------------------

    def cases(self) -> list:
        from sqlmodel import Session, select

        from storage.models import Case

        with Session(self.services.engine) as s:
            return list(s.exec(select(Case).order_by(Case.id)))

    def outbox(self) -> list:
        from sqlmodel import Session, select

        from storage.models import Outbox

        with Session(self.services.engine) as s:
            return list(s.exec(select(Outbox).order_by(Outbox.id)))
