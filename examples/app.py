"""A small Hypersonic app: the one the README runs.

    python examples/app.py --port 8080            # this file as a script
    hypersonic examples.app:app --port 8080       # the same app through the command
    python -m hypersonic examples.app:app --workers 4

Then: curl http://127.0.0.1:8080/            -> Hello, World!
      curl http://127.0.0.1:8080/status      -> {"status":"ok",...}
      curl http://127.0.0.1:8080/hello/Ada   -> {"greeting":"Hello, Ada!"}
      curl -d 'ping' http://127.0.0.1:8080/echo  -> ping

Both ways take the same options (``--help`` lists them, each with its
HYPERSONIC_* environment variable). The app is compiled by the command, so
this module only declares routes.
"""

from __future__ import annotations

from hypersonic import Hypersonic, Response
from hypersonic.request import Request

app = Hypersonic()


@app.get("/")
def hello() -> str:
    """Static: runs once at compile(); the response is baked into C."""
    return "Hello, World!"


@app.get("/status")
def status() -> dict:
    """Static JSON."""
    return {"status": "ok", "server": "hypersonic"}


@app.get("/hello/:name")
def greet(req: Request) -> dict:
    """Dynamic: runs per request, with the path parameter."""
    return {"greeting": f"Hello, {req.param('name')}!"}


@app.post("/echo")
def echo(req: Request) -> Response:
    """Dynamic POST: the request body back, with the request's content type."""
    content_type = req.header("content-type") or "application/octet-stream"
    return Response(req.body, content_type=content_type)


if __name__ == "__main__":
    from hypersonic.cli import run_app

    raise SystemExit(run_app(app, prog="python examples/app.py"))
