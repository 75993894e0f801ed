"""The benchmark routes on Hypersonic; run: python hypersonic_app.py {static,dynamic} PORT.

``static``: zero-parameter handlers, run once at compile(); requests are answered
from baked bytes in C with no Python call (``/user/:id`` needs the request, so it
stays a Python handler in both modes). ``dynamic``: every route is a Python
handler called per request.
"""

from __future__ import annotations

import sys

from hypersonic import Hypersonic

HELLO = "Hello, World!"


def build(mode: str) -> Hypersonic:
    """Return the compiled app for ``mode`` ('static' or 'dynamic')."""
    app = Hypersonic()
    if mode == "static":
        app.get("/plaintext", lambda: HELLO)
        app.get("/json", lambda: {"message": HELLO})
        app.post("/upload", lambda: "1024")
    elif mode == "dynamic":
        app.get("/plaintext", lambda req: HELLO)
        app.get("/json", lambda req: {"message": HELLO})
        app.post("/upload", lambda req: str(len(req.body)))
    else:
        raise ValueError(f"mode must be 'static' or 'dynamic', not {mode!r}")
    app.get("/user/:id", lambda req: req.param("id"))
    app.compile()
    return app


def main() -> None:
    """Serve on 127.0.0.1:PORT with one worker until SIGTERM."""
    mode, port = sys.argv[1], int(sys.argv[2])
    build(mode).run(port=port, host="127.0.0.1", workers=1)


if __name__ == "__main__":
    main()
