"""The benchmark routes on socketify (uWebSockets); run: python socketify_app.py PORT."""

from __future__ import annotations

import json
import sys
from typing import Any

from socketify import App


def plaintext(res: Any, req: Any) -> None:
    """GET /plaintext."""
    res.write_header("Content-Type", "text/plain")
    res.end("Hello, World!")


def json_route(res: Any, req: Any) -> None:
    """GET /json, serialised per request."""
    res.write_header("Content-Type", "application/json")
    res.end(json.dumps({"message": "Hello, World!"}, separators=(",", ":")))


def user(res: Any, req: Any) -> None:
    """GET /user/:id returns the id."""
    res.write_header("Content-Type", "text/plain")
    res.end(req.get_parameter(0))


def upload(res: Any, req: Any) -> None:
    """POST /upload returns the body length.

    Reads the body with ``res.on_data`` (synchronous chunks): socketify 0.0.31's
    ``await res.get_data()`` crashed the process here under wrk
    ("ffi.from_handle() ... points to garbage").
    """
    received = [0]

    def on_data(res: Any, chunk: Any, is_end: bool) -> None:
        if chunk:
            received[0] += len(chunk)
        if is_end:
            res.write_header("Content-Type", "text/plain")
            res.end(str(received[0]))

    res.on_data(on_data)


def main() -> None:
    """Serve on 127.0.0.1:PORT until killed."""
    port = int(sys.argv[1])
    app = App()
    app.get("/plaintext", plaintext)
    app.get("/json", json_route)
    app.get("/user/:id", user)
    app.post("/upload", upload)
    app.listen({"port": port, "host": "127.0.0.1"}, lambda config: None)
    app.run()


if __name__ == "__main__":
    main()
