"""The app served by scripts/soak.py (and the fault and nginx tests).

Routes, one per kind of work the server does:

* ``GET /static``: a static route (baked response, no Python per request);
* ``GET /item/:id?q=...``: a dynamic route reading a path parameter and a query
  parameter; answers ``item <id> q=<q>``;
* ``POST /echo``: answers the request body (Content-Length or chunked) as is;
* ``GET /pid``: a dynamic route answering the worker's PID (which process served);
* ``GET /slow?ms=N&id=I``: appends ``I`` to ``$SOAK_STARTED_LOG`` (when set) as the
  handler starts, sleeps N milliseconds (at most ``MAX_SLOW_MS``), answers ``slow I``;
  the fault tests use it to know which requests were in flight;
* ``GET /big``: a static 256 KiB response (clients that leave mid-response).

Run as ``python scripts/soak_app.py PORT WORKERS [HOST]``; options come from the
environment: ``SOAK_RECV_TIMEOUT``, ``SOAK_KEEPALIVE_TIMEOUT``,
``SOAK_DRAIN_TIMEOUT``, ``SOAK_NOFILE`` (lower RLIMIT_NOFILE before starting).
Stops (draining) on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from hypersonic import Hypersonic

#: Size of the ``/big`` response body.
BIG_BODY_SIZE = 256 * 1024
#: Longest sleep ``/slow`` accepts.
MAX_SLOW_MS = 5000


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


app = Hypersonic(
    recv_timeout=_env_float("SOAK_RECV_TIMEOUT", 5.0),
    keepalive_timeout=_env_float("SOAK_KEEPALIVE_TIMEOUT", 15.0),
    drain_timeout=_env_float("SOAK_DRAIN_TIMEOUT", 5.0),
    max_request_size=1024 * 1024,
)

_STARTED_LOG = os.environ.get("SOAK_STARTED_LOG")


@app.get("/static")
def static() -> str:
    return "static-ok"


@app.get("/big")
def big() -> bytes:
    return b"b" * BIG_BODY_SIZE


@app.get("/item/:id")
def item(req: Any) -> str:
    return f"item {req.param('id')} q={req.query_param('q')}"


@app.post("/echo")
def echo(req: Any) -> bytes:
    return bytes(req.body)


@app.get("/pid")
def pid(req: Any) -> str:
    return str(os.getpid())


@app.get("/slow")
def slow(req: Any) -> str:
    ident = req.query_param("id") or "-"
    if _STARTED_LOG:
        fd = os.open(_STARTED_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{ident}\n".encode())
        finally:
            os.close(fd)
    ms = min(int(req.query_param("ms") or "0"), MAX_SLOW_MS)
    time.sleep(ms / 1000.0)
    return f"slow {ident}"


def main() -> None:
    """Serve on 127.0.0.1 (or argv[3]) with argv[2] workers until SIGTERM."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
    nofile = os.environ.get("SOAK_NOFILE")
    if nofile:
        import resource

        limit = int(nofile)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    host = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    app.compile()
    app.run(port=port, host=host, workers=workers)


if __name__ == "__main__":
    main()
