"""Middleware over real TCP: before/after hooks (global and per route), their
order, short-circuits, errors, request ids, CORS, health and readiness probes.

Every test runs against the C server and the pure-Python fallback
(HYPERSONIC_JIT=0): both must behave the same."""

from __future__ import annotations

import json
import re
import signal
from typing import Iterator

import httpx
import pytest

from _http_wire import connect, get, request
from _server_util import ServerProcess, start_app

APP = """
import json
import logging
from hypersonic import Hypersonic, Response

app = Hypersonic()
trail = []            # what hooks saw, per request (reset by /trail/reset)

app.request_id()

@app.before
def auth(req):
    trail.append("global-before-1")
    if req.path.startswith("/private") and req.header("authorization") != "Bearer sesame":
        return Response({"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"})
    req.state["user"] = "alice" if req.header("authorization") else None

@app.before
def second(req):
    trail.append("global-before-2")

@app.after
def stamp(req, resp):
    trail.append("global-after-1")
    resp.headers.append(("X-Hooked", "global"))

@app.after
def last(req, resp):
    trail.append("global-after-2")
    resp.headers.append(("X-Order", ",".join(v for n, v in resp.headers if n == "X-Step")))

def route_before(req):
    trail.append("route-before")

def route_after(req, resp):
    trail.append("route-after")
    resp.headers.append(("X-Step", "route-after"))

def replace(req, resp):
    return Response("replaced " + resp.body.decode(), status=203)

def broken_after(req, resp):
    raise RuntimeError("after hook failed")

@app.get("/trail")
def get_trail(req):
    return {"trail": list(trail)}

@app.post("/trail/reset")
def reset(req):
    trail.clear()
    return "ok"

@app.get("/hello/:name", before=route_before, after=[route_after])
def hello(req):
    trail.append("handler")
    return f"hello {req.param('name')}"

@app.get("/private/data")
def private(req):
    return {"user": req.state["user"], "id": req.request_id}

@app.get("/static-hooked")
def static_hooked():
    return "baked once"

@app.get("/replaced", after=replace)
def replaced(req):
    return b"original"

@app.get("/raises")
def raises(req):
    raise ValueError("boom")

@app.get("/bad-json")
def bad_json(req):
    return req.json()

@app.get("/after-raises", after=broken_after)
def after_raises(req):
    return "never seen"

@app.get("/short", before=lambda req: (418, {"X-Short": "1"}, "teapot"))
def short(req):
    trail.append("short-handler-ran")
    return "not reached"

@app.get("/mutated")
def mutated():
    return Response("static body", headers={"X-Base": "1"})
"""

PROBE_APP = """
import os
from hypersonic import Hypersonic

app = Hypersonic()
state = {"db": True}

@app.before
def deny_all(req):
    if req.path != "/flip":
        return (401, None, "denied")

app.health_check("/health")

def database():
    return state["db"]

def cache():
    raise ConnectionError("cache unreachable")

app.ready_check("/ready", checks={"database": database})
app.ready_check("/ready-cache", checks=[database, cache])

@app.get("/flip")
def flip(req):
    state["db"] = not state["db"]
    return "flipped"

@app.get("/static-protected")
def protected():
    return "secret"
"""

CORS_APP = """
from hypersonic import Hypersonic, Response

app = Hypersonic()
app.cors(origins=["https://app.example.com", "https://admin.example.com"], credentials=True,
         expose_headers=["X-Total"], max_age=300)

@app.get("/items")
def items():
    return {"items": [1, 2]}

@app.post("/items")
def add(req):
    return Response({"added": True}, status=201, headers={"X-Total": "3"})

@app.get("/items/:id")
def item(req):
    return {"id": req.param("id")}

@app.options("/custom")
def custom(req):
    return Response(None, status=204, headers={"Allow": "GET, OPTIONS", "X-Custom": "1"})

@app.get("/custom")
def custom_get():
    return "custom"
"""

CORS_ANY_APP = """
from hypersonic import Hypersonic

app = Hypersonic()
app.cors()  # any origin, no credentials: headers baked into static routes

@app.get("/static")
def static():
    return "static"

@app.get("/dynamic")
def dynamic(req):
    return "dynamic"
"""

SERVERS = ["c", "python"]


def _env(kind: str) -> dict:
    return {"HYPERSONIC_JIT": "0"} if kind == "python" else {}


def _serve(source: str, tmp_path_factory: pytest.TempPathFactory, kind: str, name: str) -> ServerProcess:
    return start_app(source, tmp_path_factory.mktemp(f"{name}_{kind}"), module=f"{name}_{kind}", env=_env(kind))


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with _serve(APP, tmp_path_factory, request.param, "mw") as proc:
        yield proc


@pytest.fixture(scope="module", params=SERVERS)
def probe_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with _serve(PROBE_APP, tmp_path_factory, request.param, "probe") as proc:
        yield proc


@pytest.fixture(scope="module", params=SERVERS)
def cors_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with _serve(CORS_APP, tmp_path_factory, request.param, "cors") as proc:
        yield proc


@pytest.fixture(scope="module", params=SERVERS)
def cors_any_server(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with _serve(CORS_ANY_APP, tmp_path_factory, request.param, "corsany") as proc:
        yield proc


def _trail(port: int, path: str, **kwargs) -> tuple:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        client.post("/trail/reset")
        response = client.get(path, **kwargs)
        trail = client.get("/trail").json()["trail"]
    # the reset request's global after-hooks run after it clears the list, and the /trail
    # request's global before-hooks run before it reads it: two entries each end
    assert trail[:2] == ["global-after-1", "global-after-2"]
    assert trail[-2:] == ["global-before-1", "global-before-2"]
    return response, trail[2:-2]


# -- order and plumbing ----------------------------------------------------------------

def test_hooks_run_in_registration_order_global_around_route(server: ServerProcess) -> None:
    response, trail = _trail(server.port, "/hello/bob")
    assert response.status_code == 200 and response.text == "hello bob"
    assert trail == ["global-before-1", "global-before-2", "route-before", "handler",
                     "route-after", "global-after-1", "global-after-2"]
    # the route's after-hook ran before the global one that reads its header
    assert response.headers["x-order"] == "route-after"
    assert response.headers["x-hooked"] == "global"


def test_before_hook_short_circuits_handler_and_after_hooks_still_run(server: ServerProcess) -> None:
    response, trail = _trail(server.port, "/private/data")
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized"}
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["x-hooked"] == "global"
    assert trail == ["global-before-1", "global-after-1", "global-after-2"]


def test_route_before_hook_answer_skips_handler(server: ServerProcess) -> None:
    response, trail = _trail(server.port, "/short")
    assert response.status_code == 418 and response.text == "teapot"
    assert response.headers["x-short"] == "1"
    assert "short-handler-ran" not in trail


def test_before_hook_hands_state_to_handler(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/private/data", headers={"Authorization": "Bearer sesame"})
    assert response.status_code == 200
    assert response.json()["user"] == "alice"


def test_after_hook_may_replace_response(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/replaced")
    assert response.status_code == 203
    assert response.text == "replaced original"
    assert response.headers["x-hooked"] == "global"  # global after-hooks see the replacement


def test_handler_error_is_500_and_after_hooks_see_it(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/raises")
    assert response.status_code == 500
    assert "boom" not in response.text
    assert response.headers["x-hooked"] == "global"
    assert response.headers["x-request-id"]
    assert "handler failed" in server.output() or "ValueError" in server.output()


def test_bad_request_from_handler_is_400_through_hooks(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/bad-json")
    assert response.status_code == 400
    assert response.headers["x-hooked"] == "global"


def test_after_hook_error_is_500_and_server_keeps_serving(server: ServerProcess) -> None:
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(get("/after-raises") + get("/hello/x"))
        first = reader.response()
        second = reader.response()
    assert first.status == 500
    assert b"never seen" not in first.body
    assert second.status == 200 and second.body == b"hello x"


def test_static_route_with_hooks_keeps_its_baked_result_and_runs_hooks(server: ServerProcess) -> None:
    for _ in range(3):  # each request gets a fresh copy: header appends do not accumulate
        response = httpx.get(f"{server.url}/mutated")
        assert response.text == "static body"
        assert response.headers.get_list("x-hooked") == ["global"]
        assert response.headers["x-base"] == "1"


def test_head_of_hooked_route_has_headers_and_no_body(server: ServerProcess) -> None:
    reply = request(server.port, get("/hello/h", method="HEAD"), head_request=True)
    assert reply.status == 200
    assert reply.body == b""
    assert reply.header("content-length") == str(len(b"hello h"))
    assert reply.header("x-hooked") == "global"


# -- request id ---------------------------------------------------------------------------

def test_request_id_generated_and_echoed(server: ServerProcess) -> None:
    ids = set()
    for _ in range(5):
        response = httpx.get(f"{server.url}/private/data", headers={"Authorization": "Bearer sesame"})
        rid = response.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", rid)
        assert response.json()["id"] == rid  # the handler saw the same id
        ids.add(rid)
    assert len(ids) == 5


def test_valid_client_request_id_is_kept(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/private/data",
                         headers={"Authorization": "Bearer sesame", "X-Request-ID": "trace-42.abc"})
    assert response.headers["x-request-id"] == "trace-42.abc"
    assert response.json()["id"] == "trace-42.abc"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "quote\"d", "semi;colon", ""])
def test_invalid_client_request_id_is_replaced(server: ServerProcess, bad: str) -> None:
    raw = get("/private/data", extra=f"Authorization: Bearer sesame\r\nX-Request-ID: {bad}\r\n")
    reply = request(server.port, raw)
    rid = reply.header("x-request-id")
    assert rid != bad and re.fullmatch(r"[0-9a-f]{32}", rid)
    assert json.loads(reply.body)["id"] == rid


def test_request_id_on_static_route_and_errors(server: ServerProcess) -> None:
    static = httpx.get(f"{server.url}/static-hooked")
    assert static.text == "baked once"
    assert re.fullmatch(r"[0-9a-f]{32}", static.headers["x-request-id"])
    assert httpx.get(f"{server.url}/raises").headers["x-request-id"]
    assert httpx.get(f"{server.url}/private/data").headers["x-request-id"]  # 401 short-circuit


# -- health and readiness ---------------------------------------------------------------------

def test_health_check_is_exempt_from_global_hooks_and_static(probe_server: ServerProcess) -> None:
    response = httpx.get(f"{probe_server.url}/health")
    assert response.status_code == 200 and response.text == "OK"
    assert response.headers["cache-control"] == "no-store"
    assert httpx.get(f"{probe_server.url}/static-protected").status_code == 401  # the hook applies elsewhere
    head = request(probe_server.port, get("/health", method="HEAD"), head_request=True)
    assert head.status == 200 and head.body == b""


def test_ready_check_reports_each_check(probe_server: ServerProcess) -> None:
    base = probe_server.url
    ready = httpx.get(f"{base}/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok"}}
    assert ready.headers["cache-control"] == "no-store"
    failing = httpx.get(f"{base}/ready-cache")
    assert failing.status_code == 503
    body = failing.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["cache"].startswith("failed: ConnectionError: cache unreachable")


def test_ready_check_follows_a_check_that_turns_false(probe_server: ServerProcess) -> None:
    base = probe_server.url
    assert httpx.get(f"{base}/flip").text == "flipped"
    try:
        down = httpx.get(f"{base}/ready")
        assert down.status_code == 503
        assert down.json() == {"status": "unavailable", "checks": {"database": "failed"}}
    finally:
        assert httpx.get(f"{base}/flip").text == "flipped"
    assert httpx.get(f"{base}/ready").status_code == 200


def test_ready_check_is_503_while_draining(tmp_path) -> None:
    # /stop does what the worker's SIGTERM handler does; the /ready pipelined behind it
    # on the same connection is answered during the drain.
    source = """
from hypersonic import Hypersonic
app = Hypersonic(drain_timeout=10)
app.ready_check("/ready")

@app.get("/stop")
def stop(req):
    app._request_stop()
    return "stopping"
"""
    for kind in SERVERS:
        with start_app(source, tmp_path / kind, module=f"drain_{kind}", env=_env(kind)) as proc:
            sock, reader = connect(proc.port)
            with sock:
                sock.sendall(get("/ready"))
                assert reader.response().status == 200
                sock.sendall(get("/stop") + get("/ready"))
                assert reader.response().body == b"stopping"
                again = reader.response()
                assert again.status == 503
                assert json.loads(again.body) == {"status": "draining"}
            assert proc.wait() == 0


# -- CORS --------------------------------------------------------------------------------------

ORIGIN = "https://app.example.com"


def _preflight(port: int, path: str, origin: str = ORIGIN, method: str = "POST", headers: str = "") -> object:
    extra = f"Origin: {origin}\r\nAccess-Control-Request-Method: {method}\r\n"
    if headers:
        extra += f"Access-Control-Request-Headers: {headers}\r\n"
    return request(port, get(path, extra=extra, method="OPTIONS"))


def test_cors_preflight_allowed(cors_server: ServerProcess) -> None:
    reply = _preflight(cors_server.port, "/items", headers="content-type, authorization")
    assert reply.status == 204
    assert reply.header("access-control-allow-origin") == ORIGIN
    assert reply.header("access-control-allow-credentials") == "true"
    assert "POST" in reply.header("access-control-allow-methods")
    assert reply.header("access-control-allow-headers") == "content-type, authorization"
    assert reply.header("access-control-max-age") == "300"
    vary = reply.header("vary")
    assert "Origin" in vary and "Access-Control-Request-Method" in vary


def test_cors_preflight_on_parameterised_path(cors_server: ServerProcess) -> None:
    reply = _preflight(cors_server.port, "/items/42", method="GET")
    assert reply.status == 204
    assert reply.header("access-control-allow-origin") == ORIGIN


@pytest.mark.parametrize("origin, method, headers", [
    ("https://evil.example.com", "POST", ""),
    (ORIGIN, "TRACE", ""),
    (ORIGIN, "POST", "x-not-allowed"),
])
def test_cors_preflight_refused(cors_server: ServerProcess, origin: str, method: str, headers: str) -> None:
    reply = _preflight(cors_server.port, "/items", origin=origin, method=method, headers=headers)
    assert reply.status == 403
    assert reply.header("access-control-allow-origin") is None


def test_plain_options_still_answers_allow(cors_server: ServerProcess) -> None:
    reply = request(cors_server.port, get("/items", method="OPTIONS"))
    assert reply.status == 204
    assert reply.header("allow") == "GET, HEAD, POST, OPTIONS"
    custom = request(cors_server.port, get("/custom", method="OPTIONS"))
    assert custom.header("x-custom") == "1"  # the app's own OPTIONS route is kept


def test_cors_actual_request_from_allowed_origin(cors_server: ServerProcess) -> None:
    response = httpx.post(f"{cors_server.url}/items", headers={"Origin": "https://admin.example.com"})
    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == "https://admin.example.com"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-expose-headers"] == "X-Total"
    assert "Origin" in response.headers["vary"]
    static = httpx.get(f"{cors_server.url}/items", headers={"Origin": ORIGIN})
    assert static.headers["access-control-allow-origin"] == ORIGIN  # static route, hook per request


def test_cors_other_origin_gets_no_allow_header(cors_server: ServerProcess) -> None:
    response = httpx.get(f"{cors_server.url}/items", headers={"Origin": "https://evil.example.com"})
    assert response.status_code == 200  # the server answers; the browser withholds it
    assert "access-control-allow-origin" not in response.headers
    assert "Origin" in response.headers["vary"]
    no_origin = httpx.get(f"{cors_server.url}/items")
    assert "access-control-allow-origin" not in no_origin.headers


def test_cors_any_origin_is_baked_into_static_routes(cors_any_server: ServerProcess) -> None:
    static = httpx.get(f"{cors_any_server.url}/static", headers={"Origin": "https://x.example"})
    assert static.headers["access-control-allow-origin"] == "*"
    dynamic = httpx.get(f"{cors_any_server.url}/dynamic", headers={"Origin": "https://x.example"})
    assert dynamic.headers["access-control-allow-origin"] == "*"
    preflight = _preflight(cors_any_server.port, "/static", origin="https://x.example", method="GET")
    assert preflight.status == 204
    assert preflight.header("access-control-allow-origin") == "*"


def test_cors_any_origin_static_route_runs_no_python(tmp_path) -> None:
    from hypersonic import Hypersonic

    app = Hypersonic(cache_dir=str(tmp_path / "cache"))
    app.cors()
    app.get("/s", lambda: "s")
    app.get("/d", lambda req: "d")
    app.request_id(include_static=False)
    app.compile()
    assert app.route_counts() == (1, 3)  # /s baked; /d and the two OPTIONS routes run Python


# -- registration errors ------------------------------------------------------------------------

def test_hook_arguments_are_checked(tmp_path) -> None:
    from hypersonic import Hypersonic

    app = Hypersonic(cache_dir=str(tmp_path / "cache"))
    with pytest.raises(TypeError, match="before"):
        app.get("/a", lambda req: "a", before="not callable")
    with pytest.raises(TypeError, match=r"after\[1\]"):
        app.get("/a", lambda req: "a", after=[lambda r, s: None, 3])
    with pytest.raises(TypeError, match="before"):
        app.before(42)
    with pytest.raises(TypeError, match="include_static"):
        app.after(lambda r, s: None, include_static="yes")
    with pytest.raises(ValueError, match="origins"):
        app.cors(origins=["example.com"])
    with pytest.raises(ValueError, match="max_age"):
        app.cors(max_age=-1)
    with pytest.raises(TypeError, match="checks"):
        app.ready_check("/ready", checks=[1])
    with pytest.raises(ValueError, match="header"):
        app.request_id("bad header")
    app.request_id()
    with pytest.raises(RuntimeError, match="already"):
        app.request_id()
    app.get("/ok", lambda: "ok")
    app.compile()
    with pytest.raises(RuntimeError, match="after compile"):
        app.before(lambda req: None)


def test_static_route_counts_become_dynamic_only_when_hooked(tmp_path) -> None:
    from hypersonic import Hypersonic

    app = Hypersonic(cache_dir=str(tmp_path / "cache"))
    app.before(lambda req: None, include_static=False)
    app.get("/s", lambda: "s")
    app.get("/hooked", lambda: "h", after=lambda req, resp: None)
    app.health_check()
    app.compile()
    assert app.route_counts() == (2, 1)


STREAM_APP = """
from hypersonic import Hypersonic, Response

app = Hypersonic()
app.request_id()

@app.before
def guard(req):
    if req.header("authorization") != "Bearer ok":
        return Response({"error": "unauthorized"}, status=401)
    req.state["user"] = "bob"

@app.get("/feed", streaming=True)
def feed(req, stream):
    stream.headers(200, {"X-User": req.state["user"], "X-Id": req.request_id})
    for i in range(3):
        stream.write(f"line {i}\\n")
"""


@pytest.mark.parametrize("kind", SERVERS)
def test_before_hooks_guard_streaming_routes(tmp_path, kind: str) -> None:
    with start_app(STREAM_APP, tmp_path / kind, module=f"streammw_{kind}", env=_env(kind)) as proc:
        denied = httpx.get(f"{proc.url}/feed")
        assert denied.status_code == 401
        assert denied.json() == {"error": "unauthorized"}
        allowed = httpx.get(f"{proc.url}/feed", headers={"Authorization": "Bearer ok", "X-Request-ID": "abc-1"})
        assert allowed.status_code == 200
        assert allowed.text == "line 0\nline 1\nline 2\n"
        assert allowed.headers["x-user"] == "bob"
        assert allowed.headers["x-id"] == "abc-1"
        assert allowed.headers["transfer-encoding"] == "chunked"


INJECT_APP = """
from hypersonic import Hypersonic

app = Hypersonic()

@app.after
def inject(req, resp):
    resp.headers.append(("X-Evil", req.query_param("v", "ok")))

@app.get("/page")
def page(req):
    return "page"
"""


@pytest.mark.parametrize("kind", SERVERS)
def test_after_hook_header_with_crlf_is_a_500_not_a_split_response(tmp_path, kind: str) -> None:
    with start_app(INJECT_APP, tmp_path / kind, module=f"inject_{kind}", env=_env(kind)) as proc:
        sock, reader = connect(proc.port)
        with sock:
            # %0d%0a decodes to CR LF: the hook would write "X-Evil: a\\r\\nSet-Cookie: pwned=1"
            sock.sendall(get("/page?v=a%0d%0aSet-Cookie:%20pwned=1") + get("/page?v=fine"))
            bad = reader.response()
            good = reader.response()
        assert bad.status == 500
        assert bad.header("set-cookie") is None
        assert good.status == 200 and good.header("x-evil") == "fine"
