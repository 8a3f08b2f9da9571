"""Fixed-window rate limits per user and per IP, answered with 429 and ``Retry-After``.

Counters live in Redis when ``HUINONG_REDIS_URL`` is set (shared by every worker and host);
otherwise in process memory: each worker then counts on its own, which bounds a flood all the
same without putting a database write in front of every request.
"""

from __future__ import annotations

import math
import time

from handlers.errors import RateLimited
from storage.kv import KV, MemoryKV, RedisKV


class RateLimiter:
    def __init__(self, kv: KV, *, clock=time.time):
        self.kv = kv
        self.clock = clock

    @classmethod
    def for_settings(cls, settings, kv: KV) -> RateLimiter:
        return cls(kv if settings.redis_url and isinstance(kv, RedisKV) else MemoryKV())

    def hit(self, scope: str, ident: str, *, limit: int, window: int, message: str) -> None:
        """Count one request of ``ident`` in ``scope``; ``RateLimited`` once over ``limit`` per ``window`` s."""
        if limit <= 0:
            return
        now = self.clock()
        slot = int(now // window)
        count = self.kv.incr(f"rl:{scope}:{ident}:{slot}", ttl=window + 1)
        if count > limit:
            retry = max(1, math.ceil((slot + 1) * window - now))
            raise RateLimited(message.format(seconds=retry, minutes=max(1, math.ceil(retry / 60))),
                              retry_after=retry)
