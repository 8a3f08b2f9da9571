"""A keep-alive HTTP client for the real server processes of tests/servers.py.

:class:`HttpClient` has the small part of Flask's test client interface
:class:`tests.wechat_user.WeChatUser` uses, so the same signed and encrypted WeChat messages go to a
real server over TCP; :class:`Response` is what it returns.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode


@dataclass
class Response:
    status_code: int
    headers: dict[str, str]
    data: bytes

    def get_data(self, as_text: bool = False):
        return self.data.decode("utf-8", "replace") if as_text else self.data

    @property
    def text(self) -> str:
        return self.get_data(as_text=True)

    @property
    def mimetype(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()

    def get_json(self):
        import json

        return json.loads(self.data.decode("utf-8"))


class HttpClient:
    """Keep-alive HTTP to ``127.0.0.1:port``; one connection per thread, reopened after an error.

    ``post(path, query_string=…, data=…, content_type=…)`` and ``get(path, query_string=…)``
    return a :class:`Response` with ``status_code`` and ``get_data(as_text=True)``, like Flask's
    test client, so :class:`tests.wechat_user.WeChatUser` can drive a real server.
    A connection-level failure (the worker died) raises ``OSError`` / ``http.client.HTTPException``.
    """

    def __init__(self, port: int, *, host: str = "127.0.0.1", timeout: float = 30.0):
        self.host, self.port, self.timeout = host, port, timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()  # every thread's, for close_all()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
            with self._lock:
                self._open.add(conn)
        return conn

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._lock:
                self._open.discard(conn)

    def close_all(self) -> None:
        """Close the connections of every thread (they would otherwise be left to the garbage
        collector, with a ResourceWarning, when the threads end)."""
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            conn.close()

    def request(self, method: str, path: str, *, query_string: Mapping[str, str] | None = None,
                data: bytes | str | None = None, content_type: str | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        url = path + ("?" + urlencode(query_string) if query_string else "")
        body = data.encode("utf-8") if isinstance(data, str) else data
        hdrs = dict(headers or {})
        if content_type:
            hdrs["Content-Type"] = content_type
        conn = self._conn()
        try:
            conn.request(method, url, body=body, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        result = Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload)
        if resp.will_close:
            self.close()
        return result

    def post(self, path: str, **kw) -> Response:
        return self.request("POST", path, **kw)

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)
