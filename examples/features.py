"""The production features in one app: static files, middleware, compression,
streaming and Server-Sent Events.

    python examples/features.py --port 8080

Then:
    curl -i http://127.0.0.1:8080/                       -> index.html (ETag, Cache-Control)
    curl --compressed -i http://127.0.0.1:8080/css/site.css
    curl -i http://127.0.0.1:8080/api/me                 -> 401 (no token)
    curl -H 'Authorization: Bearer demo' http://127.0.0.1:8080/api/me
    curl http://127.0.0.1:8080/export.csv                -> 1000 rows, streamed (chunked)
    curl -N http://127.0.0.1:8080/events                 -> a tick every second (SSE)
    curl http://127.0.0.1:8080/health /ready
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from hypersonic import SSE, Hypersonic, Response
from hypersonic.request import Request
from hypersonic.stream import Stream

PUBLIC = Path(__file__).resolve().parent / "public"
TOKEN = "Bearer demo"

app = Hypersonic()
app.request_id()                                     # X-Request-ID on every response
app.cors(origins=["http://localhost:3000"])          # a front end on another origin
app.compress(min_size=256)                           # gzip JSON, CSS, HTML when asked
app.health_check("/health")
app.ready_check("/ready", checks={"public dir": PUBLIC.is_dir})


@app.before
def authenticate(req: Request) -> Optional[Response]:
    """Everything under /api needs the token; the rest is public."""
    if req.path.startswith("/api/") and req.header("authorization") != TOKEN:
        return Response({"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"})
    return None


def no_store(req: Request, resp: Any) -> None:
    """A per-route after-hook: personal data is never cached."""
    resp.headers.append(("Cache-Control", "no-store"))


@app.get("/api/me", after=[no_store])
def me(req: Request) -> dict:
    return {"user": "demo", "request_id": req.request_id}


@app.get("/api/items")
def items(req: Request) -> dict:
    return {"items": [{"id": i, "name": f"item {i}"} for i in range(50)]}


@app.get("/export.csv", streaming=True)
def export(req: Request, stream: Stream) -> None:
    """A CSV produced row by row; write() blocks while the client lags."""
    stream.headers(200, content_type="text/csv; charset=utf-8")
    stream.write("n,square\n")
    for n in range(1000):
        stream.write(f"{n},{n * n}\n")


@app.get("/events", streaming=True)
def events(req: Request, stream: Stream) -> None:
    """A clock: one "tick" event a second, resumable with Last-Event-ID."""
    sse = SSE(stream, keepalive=15)
    last = sse.last_event_id or ""
    count = int(last) if last.isdigit() else 0
    while not stream.closed:
        count += 1
        sse.event(time.strftime("%H:%M:%S"), event="tick", id=str(count))
        if stream.wait_closed(timeout=1.0):
            break


app.static("/", PUBLIC, max_age=300)                 # last: the app's routes win over the mount


if __name__ == "__main__":
    from hypersonic.cli import run_app

    raise SystemExit(run_app(app, prog="python examples/features.py"))
