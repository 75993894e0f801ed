"""The feature benchmark's app (bench/features.py): python hypersonic_features.py MODE PORT DOCROOT.

Every mode serves ``/plaintext`` (static, for the harness's readiness probe),
the files under DOCROOT at ``/static/`` (``app.static``), and two dynamic
routes: ``/api`` (a small JSON answer) and ``/report`` (about 8 KiB of JSON).

``plain``: nothing else. ``hooks``: ``request_id()``, ``cors()`` for one
origin and an authentication-style before-hook on every route (the
readiness probe's ``/plaintext`` needs no token).
``gzip``: ``compress()`` with its defaults.
"""

from __future__ import annotations

import sys

from hypersonic import Hypersonic, Response

HELLO = "Hello, World!"
REPORT = {"rows": [{"id": i, "name": f"row {i}", "value": i * 3.5, "tags": ["alpha", "beta"]} for i in range(120)]}
TOKEN = "Bearer bench"


def build(mode: str, docroot: str) -> Hypersonic:
    """Return the compiled app for ``mode``."""
    app = Hypersonic()
    if mode == "hooks":
        app.request_id()
        app.cors(origins=["https://app.example.com"])

        @app.before
        def authenticate(req):  # the common shape: read a header, compare, go on
            if req.header("authorization") != TOKEN and req.path != "/plaintext":
                return Response({"error": "unauthorized"}, status=401)
            return None
    elif mode == "gzip":
        app.compress()
    elif mode != "plain":
        raise ValueError(f"mode must be plain, hooks or gzip, not {mode!r}")
    app.get("/plaintext", lambda: HELLO)
    app.get("/api", lambda req: {"message": HELLO})
    app.get("/report", lambda req: REPORT)
    app.static("/static", docroot, max_age=3600)
    app.compile()
    return app


def main() -> None:
    """Serve on 127.0.0.1:PORT with one worker until SIGTERM."""
    mode, port, docroot = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    build(mode, docroot).run(port=port, host="127.0.0.1", workers=1)


if __name__ == "__main__":
    main()
