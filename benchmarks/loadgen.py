"""HTTP load from a second process: pre-built requests, threads with keep-alive connections.

Reads a pickle of ``[(path_and_query, body_bytes), …]`` (built beforehand, so signing and
encryption cost the load nothing), sends each once over ``--concurrency`` keep-alive connections
to 127.0.0.1, and prints one JSON line: requests, statuses, connection errors, elapsed seconds,
requests per second, latency p50 / p95 / p99 in ms. Bounded in count (the file) and in time
(``--max-seconds``: requests not sent by then are counted as ``not_sent``). ``--bodies FILE``
keeps every response body (for checking them afterwards, outside the timed run).

    .venv/bin/python benchmarks/loadgen.py --port 8000 --requests reqs.pickle --concurrency 16
"""

from __future__ import annotations

import argparse
import http.client
import json
import pickle
import sys
import threading
import time
from collections import Counter


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))]


def run(port: int, requests: list[tuple[str, bytes]], concurrency: int, max_seconds: float,
        content_type: str = "text/xml") -> tuple[dict, list[bytes | None]]:
    bodies: list[bytes | None] = [None] * len(requests)
    latencies: list[float] = []
    statuses: Counter = Counter()
    errors: Counter = Counter()
    lock = threading.Lock()
    next_index = iter(range(len(requests)))
    start = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start.wait()
        while time.monotonic() < deadline[0]:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            path, body = requests[i]
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": content_type})
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                with lock:
                    errors[type(exc).__name__] += 1
                continue
            ms = (time.perf_counter() - t0) * 1000
            with lock:
                latencies.append(ms)
                statuses[resp.status] += 1
                bodies[i] = data
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    deadline[0] = t0 + max_seconds
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    done = sum(statuses.values())
    return {
        "requests": len(requests), "done": done, "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors), "not_sent": len(requests) - done - sum(errors.values()),
        "elapsed_s": round(elapsed, 3), "rps": round(done / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(_pct(latencies, 50), 2), "p95_ms": round(_pct(latencies, 95), 2),
        "p99_ms": round(_pct(latencies, 99), 2), "concurrency": concurrency,
    }, bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", required=True, help="pickle of [(path_and_query, body_bytes), …]")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--bodies", default=None, help="write the response bodies (pickle) here")
    args = parser.parse_args()
    with open(args.requests, "rb") as fh:
        requests = pickle.load(fh)
    result, bodies = run(args.port, requests, args.concurrency, args.max_seconds)
    if args.bodies:
        with open(args.bodies, "wb") as fh:
            pickle.dump(bodies, fh)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
