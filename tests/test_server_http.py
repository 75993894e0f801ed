"""HTTP behaviour of a real server subprocess over real TCP: routing, every
response type, headers, the request object, HTTP/1.1 framing (pipelining,
split requests, chunked bodies, 100-continue, keep-alive), limits and errors.

One app (APP) serves most tests; it is compiled once per session (the JIT
cache in _server_util.TEST_CACHE_DIR is shared)."""

from __future__ import annotations

import email.utils
import json
import socket
import time
from typing import Iterator

import httpx
import pytest

from _http_wire import connect, get, request
from _server_util import ServerProcess, start_app

APP = """
import time
from hypersonic import Hypersonic, Response

app = Hypersonic(max_request_size=1000)
static_calls = []

@app.get("/")
def index():
    return "Hello, World!"

@app.get("/json")
def json_static():
    return {"hello": "world", "n": [1, 2]}

@app.get("/counted")
def counted():
    static_calls.append(1)
    return f"static handler ran {len(static_calls)} time(s)"

@app.get("/static-big")
def static_big():
    return bytes(range(256)) * 4096  # every byte value, 1 MiB, baked into C

@app.get("/bytes")
def raw_bytes():
    return b"\\x00\\x01binary"

@app.get("/unicode")
def unicode_text():
    return "h\\u00e9llo \\u2713"

@app.get("/static-response")
def static_response():
    return Response("made", status=201, headers={"X-Custom": "yes"}, content_type="text/x-custom")

@app.get("/static-tuple")
def static_tuple():
    return (202, [("X-Rep", "1"), ("X-Rep", "2")], ["a", "b"])

@app.get("/users/me")
def users_me():
    return "static me"

@app.get("/users/:id")
def user(req):
    return {"id": req.param("id")}

@app.get("/users/:id/posts/:post")
def user_post(req):
    return {"id": req.param("id"), "post": req.param("post"), "params": req.params}

@app.get("/files/:name")
def file_name(req):
    return req.param("name")

@app.post("/echo")
def echo(req):
    return req.body

@app.put("/items/:id")
def put_item(req):
    return {"method": req.method, "id": req.param("id"), "body": req.body.decode()}

@app.delete("/items/:id")
def delete_item(req):
    return {"method": req.method, "id": req.param("id")}

@app.patch("/items/:id")
def patch_item(req):
    return {"method": req.method, "id": req.param("id")}

@app.post("/json-in")
def json_in(req):
    return {"got": req.json()}

@app.post("/form")
def form(req):
    f = req.form()
    return {k: f.getall(k) for k in f}

@app.get("/inspect")
def inspect_request(req):
    return {
        "method": req.method, "path": req.path, "query_string": req.query_string,
        "query": {k: req.query.getall(k) for k in req.query},
        "x_multi": req.headers.getall("X-Multi"), "x_multi_joined": req.header("x-multi"),
        "ua": req.header("USER-AGENT"), "cookies": req.cookies, "sid": req.cookie("sid"),
        "missing": req.header("x-missing"),
    }

@app.get("/dyn-response")
def dyn_response(req):
    return Response({"ok": True}, status=201, headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])

@app.get("/dyn-tuple")
def dyn_tuple(req):
    return (418, {"X-Teapot": "short"}, "tea")

@app.get("/status/:code")
def status(req):
    return Response("body", status=int(req.param("code")))

@app.get("/override")
def override(req):
    return Response("x", headers={"X-Frame-Options": "SAMEORIGIN", "Content-Type": "text/html"})

@app.get("/boom")
def boom(req):
    raise RuntimeError("secret detail")

@app.get("/none")
def none(req):
    return None

@app.get("/unserialisable")
def unserialisable(req):
    return {"x": object()}

@app.get("/nested-json")
def nested_json(req):
    return [{"k": "\u00e9", "n": None, "f": 1.5, "t": True, "l": [1, {"a": []}]}]

@app.get("/big")
def big(req):
    return b"0123456789abcdef" * (4 * 1024 * 1024 // 16)

@app.get("/method")
def method(req):
    return req.method

@app.get("/zero-dynamic", dynamic=True)
def zero_dynamic():
    static_calls.append(1)
    return "dynamic"

@app.get("/explicit-head")
def explicit_head_get():
    return "get body"

@app.head("/explicit-head")
def explicit_head():
    return Response("", headers={"X-Head": "explicit"})

@app.options("/custom-options")
def custom_options():
    return Response("", status=200, headers={"Allow": "GET, OPTIONS", "X-Options": "custom"})

@app.get("/custom-options")
def custom_options_get():
    return "x"

@app.get("/stats")
def stats(req):
    return app.stats()

@app.get("/bt/static/end")
def bt_static():
    return "static end"

@app.get("/bt/:x/other")
def bt_param(req):
    return {"x": req.param("x")}

@app.get("/lazy")
def lazy(req):
    # nothing was parsed before the handler looked: the caches are still empty
    return {"parsed": [req._headers is not None, req._query is not None, req._cookies is not None,
                       req._params is not None, req._form is not None]}

@app.get("/sleep")
def sleep(req):
    time.sleep(float(req.query_param("s", "0.5")))
    return "slept"
"""


@pytest.fixture(scope="module", params=["native", "poll"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The app served with the platform's event backend, then with poll(2): every test runs on both."""
    env = {"HYPERSONIC_EVENT_BACKEND": "poll"} if request.param == "poll" else {}
    srv = start_app(APP, tmp_path_factory.mktemp("http_app"), env=env)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10.0) as c:
        yield c


SECURITY = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "x-xss-protection": "1; mode=block",
    "referrer-policy": "strict-origin-when-cross-origin",
}


def assert_security_headers(headers: httpx.Headers) -> None:
    for name, value in SECURITY.items():
        assert headers.get(name) == value, name


# -- responses -----------------------------------------------------------------------

def test_static_str_is_text_plain_with_exact_length(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.text == "Hello, World!"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["content-length"] == "13"
    assert_security_headers(r.headers)


def test_static_dict_is_compact_json(client: httpx.Client) -> None:
    r = client.get("/json")
    assert r.headers["content-type"] == "application/json"
    assert r.content == b'{"hello":"world","n":[1,2]}'


def test_bytes_and_unicode_bodies_keep_exact_lengths(client: httpx.Client) -> None:
    assert client.get("/bytes").content == b"\x00\x01binary"
    r = client.get("/unicode")
    assert r.content == "héllo ✓".encode() and r.headers["content-length"] == str(len("héllo ✓".encode()))


def test_large_static_body_with_every_byte_value_is_baked_exactly(server: ServerProcess) -> None:
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(get("/static-big") + get("/static-big", method="HEAD") + get("/"))
        big = reader.response()
        head = reader.response(head_request=True)
        assert reader.response().body == b"Hello, World!"
    assert big.body == bytes(range(256)) * 4096
    assert head.header("content-length") == str(1024 * 1024) and head.body == b""


def test_static_response_and_tuple_forms(client: httpx.Client) -> None:
    r = client.get("/static-response")
    assert (r.status_code, r.text, r.headers["x-custom"], r.headers["content-type"]) == (
        201, "made", "yes", "text/x-custom")
    r = client.get("/static-tuple")
    assert r.status_code == 202 and r.json() == ["a", "b"]
    assert r.headers.get_list("x-rep") == ["1", "2"]


def test_dynamic_response_and_tuple_forms(client: httpx.Client) -> None:
    r = client.get("/dyn-response")
    assert r.status_code == 201 and r.json() == {"ok": True}
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert_security_headers(r.headers)
    r = client.get("/dyn-tuple")
    assert (r.status_code, r.reason_phrase, r.text, r.headers["x-teapot"]) == (418, "Unused", "tea", "short")


@pytest.mark.parametrize("code,phrase", [(200, "OK"), (201, "Created"), (301, "Moved Permanently"),
                                         (400, "Bad Request"), (413, "Content Too Large"),
                                         (422, "Unprocessable Content"), (429, "Too Many Requests"),
                                         (503, "Service Unavailable"), (599, "")])
def test_status_lines_carry_rfc9110_reason_phrases(server: ServerProcess, code: int, phrase: str) -> None:
    resp = request(server.port, get(f"/status/{code}"))
    assert resp.status == code and resp.reason == phrase.encode()
    assert resp.body == b"body" and resp.header("content-length") == "4"


@pytest.mark.parametrize("code", [204, 304])
def test_no_content_statuses_have_no_body(server: ServerProcess, code: int) -> None:
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(get(f"/status/{code}") + get("/"))
        first = reader.response()
        assert first.status == code and first.body == b""
        assert code == 304 or first.header("content-length") is None
        assert reader.response().body == b"Hello, World!"  # framing intact after the empty response


def test_handler_headers_override_security_headers(client: httpx.Client) -> None:
    r = client.get("/override")
    assert r.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert r.headers.get_list("content-type") == ["text/html"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_date_header_is_current_imf_fixdate(client: httpx.Client) -> None:
    for path in ("/", "/users/1", "/nope"):
        value = client.get(path).headers["date"]
        assert value.endswith(" GMT") and len(value) == 29
        sent = email.utils.parsedate_to_datetime(value).timestamp()
        assert abs(sent - time.time()) < 5


def test_handler_exception_is_500_without_detail_and_logged(server: ServerProcess, client: httpx.Client) -> None:
    r = client.get("/boom")
    assert r.status_code == 500 and r.text == "Internal Server Error"
    assert "secret" not in r.text
    assert_security_headers(r.headers)
    assert client.get("/").status_code == 200  # still serving
    deadline = time.monotonic() + 5
    while "RuntimeError: secret detail" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    out = server.output()
    assert "GET /boom: handler failed" in out and "Traceback" in out


def test_dynamic_handler_returning_none_is_500(client: httpx.Client) -> None:
    assert client.get("/none").status_code == 500


def test_unserialisable_result_is_500_and_nested_json_is_exact(client: httpx.Client) -> None:
    assert client.get("/unserialisable").status_code == 500
    r = client.get("/nested-json")
    assert r.content == '[{"k":"\u00e9","n":null,"f":1.5,"t":true,"l":[1,{"a":[]}]}]'.encode()
    assert r.json() == [{"k": "é", "n": None, "f": 1.5, "t": True, "l": [1, {"a": []}]}]


def test_bad_json_is_400(client: httpx.Client) -> None:
    r = client.post("/json-in", content=b"{not json")
    assert r.status_code == 400
    assert client.post("/json-in", content=b'{"a": [1]}').json() == {"got": {"a": [1]}}


# -- routing ---------------------------------------------------------------------------

def test_parameters_match_exactly_one_segment(client: httpx.Client) -> None:
    assert client.get("/users/42").json() == {"id": "42"}
    assert client.get("/users/").status_code == 404
    assert client.get("/users/1/2").status_code == 404
    assert client.get("/users").status_code == 404


def test_several_parameters_per_route(client: httpx.Client) -> None:
    assert client.get("/users/7/posts/abc").json() == {"id": "7", "post": "abc", "params": {"id": "7", "post": "abc"}}


def test_static_segment_preferred_over_parameter(client: httpx.Client) -> None:
    assert client.get("/users/me").text == "static me"
    assert client.get("/users/mee").json() == {"id": "mee"}


def test_static_segment_that_leads_nowhere_backtracks_to_parameter(client: httpx.Client) -> None:
    assert client.get("/bt/static/end").text == "static end"
    assert client.get("/bt/static/other").json() == {"x": "static"}
    assert client.get("/bt/other/other").json() == {"x": "other"}
    assert client.get("/bt/static/none").status_code == 404


def test_request_is_parsed_lazily(client: httpx.Client) -> None:
    r = client.get("/lazy?a=1", headers={"Cookie": "a=b"})
    assert r.json() == {"parsed": [False, False, False, False, False]}


def test_date_of_baked_responses_is_refreshed(server: ServerProcess) -> None:
    first = request(server.port, get("/")).header("date")
    deadline = time.monotonic() + 5
    second = first
    while second == first and time.monotonic() < deadline:
        time.sleep(0.25)
        second = request(server.port, get("/")).header("date")
    assert second != first
    assert email.utils.parsedate_to_datetime(second) > email.utils.parsedate_to_datetime(first)


def test_parameter_values_are_percent_decoded(client: httpx.Client) -> None:
    assert client.get("/files/a%20b%2Fc").text == "a b/c"


def test_query_string_does_not_affect_routing(client: httpx.Client) -> None:
    assert client.get("/?x=1").text == "Hello, World!"
    assert client.get("/users/5?x=1").json() == {"id": "5"}


def test_unknown_path_is_404_with_security_headers(client: httpx.Client) -> None:
    r = client.get("/does/not/exist")
    assert r.status_code == 404 and r.text == "Not Found"
    assert_security_headers(r.headers)


def test_wrong_method_is_405_with_allow(client: httpx.Client) -> None:
    r = client.post("/")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, OPTIONS"
    r = client.post("/items/1")
    assert r.status_code == 405 and r.headers["allow"] == "PUT, DELETE, PATCH, OPTIONS"


def test_put_delete_patch_routes(client: httpx.Client) -> None:
    assert client.put("/items/3", content=b"data").json() == {"method": "PUT", "id": "3", "body": "data"}
    assert client.delete("/items/3").json() == {"method": "DELETE", "id": "3"}
    assert client.patch("/items/3").json() == {"method": "PATCH", "id": "3"}


def test_head_of_static_get_has_get_headers_and_no_body(server: ServerProcess) -> None:
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(get("/", method="HEAD") + get("/"))
        head = reader.response(head_request=True)
        full = reader.response()
    assert head.status == 200 and head.body == b""
    assert head.header("content-length") == "13"
    strip = lambda r: [(n, v) for n, v in r.headers if n.lower() != b"date"]  # noqa: E731
    assert strip(head) == strip(full)


def test_head_of_dynamic_get_calls_handler_with_head_method(server: ServerProcess) -> None:
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(get("/method", method="HEAD") + get("/method"))
        head = reader.response(head_request=True)
        full = reader.response()
    assert head.body == b"" and head.header("content-length") == "4"
    assert full.body == b"GET"


def test_registered_head_route_wins_over_get(server: ServerProcess) -> None:
    resp = request(server.port, get("/explicit-head", method="HEAD"), head_request=True)
    assert resp.header("x-head") == "explicit" and resp.body == b""


def test_options_lists_allowed_methods(server: ServerProcess) -> None:
    resp = request(server.port, get("/items/9", method="OPTIONS"))
    assert resp.status == 204 and resp.header("allow") == "PUT, DELETE, PATCH, OPTIONS"
    star = request(server.port, get("*", method="OPTIONS"))
    assert star.status == 204
    assert star.header("allow") == "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"
    custom = request(server.port, get("/custom-options", method="OPTIONS"))
    assert custom.status == 200 and custom.header("x-options") == "custom"


def test_unknown_method_is_501_and_closes(server: ServerProcess) -> None:
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(get("/", method="BREW"))
        resp = reader.response()
        assert resp.status == 501 and resp.header("connection") == "close"
        assert reader.at_eof()


# -- the request object over the wire ------------------------------------------------

def test_request_accessors(server: ServerProcess) -> None:
    raw = (b"GET /inspect?a=1&a=2&sp=x+y&pct=%41&empty= HTTP/1.1\r\nHost: t\r\nUser-Agent: ua/1\r\n"
           b"X-Multi: one\r\nx-multi: two\r\nCookie: sid=abc; theme=dark\r\n\r\n")
    data = json.loads(request(server.port, raw).body)
    assert data == {
        "method": "GET", "path": "/inspect", "query_string": "a=1&a=2&sp=x+y&pct=%41&empty=",
        "query": {"a": ["1", "2"], "sp": ["x y"], "pct": ["A"], "empty": [""]},
        "x_multi": ["one", "two"], "x_multi_joined": "one, two", "ua": "ua/1",
        "cookies": {"sid": "abc", "theme": "dark"}, "sid": "abc", "missing": None,
    }


def test_form_decoding(client: httpx.Client) -> None:
    r = client.post("/form", content=b"a=1+2&b=%C3%A9&empty=&a=3",
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.json() == {"a": ["1 2", "3"], "b": ["é"], "empty": [""]}


# -- HTTP/1.1 framing ----------------------------------------------------------------------

def test_pipelined_requests_answered_in_order_in_one_write(server: ServerProcess) -> None:
    sock, reader = connect(server.port)
    paths = ["/", "/users/1", "/json", "/nope", "/users/2", "/method", "/bytes", "/users/me"] * 2
    with sock:
        sock.sendall(get("/stats"))
        before = json.loads(reader.response().body)
        sock.sendall(b"".join(get(p) for p in paths))
        bodies = [reader.response().body for _ in paths]
        sock.sendall(get("/stats"))
        after = json.loads(reader.response().body)
    assert bodies == [b"Hello, World!", b'{"id":"1"}', b'{"hello":"world","n":[1,2]}', b"Not Found",
                      b'{"id":"2"}', b"GET", b"\x00\x01binary", b"static me"] * 2
    # the /stats response before, then all 16 pipelined responses in ONE write
    assert after["writes"] - before["writes"] == 2


def test_static_route_calls_no_python(server: ServerProcess) -> None:
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(get("/stats"))
        before = json.loads(reader.response().body)
        for _ in range(50):
            sock.sendall(get("/counted"))
            assert reader.response().body == b"static handler ran 1 time(s)"
        sock.sendall(get("/stats"))
        after = json.loads(reader.response().body)
    assert after["python_calls"] - before["python_calls"] == 1  # only the /stats call itself
    assert after["static_responses"] - before["static_responses"] == 50


def test_zero_parameter_handler_with_dynamic_true_runs_per_request(client: httpx.Client) -> None:
    stats0 = client.get("/stats").json()
    assert client.get("/zero-dynamic").text == "dynamic"
    assert client.get("/zero-dynamic").text == "dynamic"
    assert client.get("/stats").json()["python_calls"] - stats0["python_calls"] == 3


def test_half_closed_client_gets_every_answer_then_close(server: ServerProcess) -> None:
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(get("/") + get("/users/9") + get("/big"))
        sock.shutdown(socket.SHUT_WR)  # the client is done sending, still reading
        assert reader.response().body == b"Hello, World!"
        assert reader.response().body == b'{"id":"9"}'
        assert len(reader.response().body) == 4 * 1024 * 1024
        assert reader.at_eof()


def test_request_split_across_many_segments(server: ServerProcess) -> None:
    sock, reader = connect(server.port)
    raw = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world"
    with sock:
        for i in range(0, len(raw), 7):
            sock.sendall(raw[i:i + 7])
            time.sleep(0.01)
        assert reader.response().body == b"hello world"


def test_chunked_request_body_is_decoded(server: ServerProcess) -> None:
    raw = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(raw + get("/"))
        assert reader.response().body == b"hello world"
        assert reader.response().body == b"Hello, World!"


def test_expect_100_continue(server: ServerProcess) -> None:
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert reader.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abcde")
        assert reader.response().body == b"abcde"


def test_keep_alive_by_default_in_http11(server: ServerProcess) -> None:
    sock, reader = connect(server.port)
    with sock:
        for _ in range(3):
            sock.sendall(get("/"))
            resp = reader.response()
            assert resp.header("connection") is None


def test_connection_close_is_honoured_and_echoed(server: ServerProcess) -> None:
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(get("/", "Connection: close\r\n") + get("/json"))
        resp = reader.response()
        assert resp.header("connection") == "close" and resp.body == b"Hello, World!"
        assert reader.at_eof()
        assert reader.buf == b""  # the request after close was not answered


def test_http10_closes_unless_keep_alive_requested(server: ServerProcess) -> None:
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        resp = reader.response()
        assert resp.header("connection") == "close"
        assert reader.at_eof()
    sock, reader = connect(server.port)
    with sock:
        for _ in range(2):
            sock.sendall(b"GET /users/4 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            resp = reader.response()
            assert resp.header("connection") == "keep-alive" and resp.body == b'{"id":"4"}'


def test_large_response_to_slow_reader_does_not_block_others(server: ServerProcess) -> None:
    stats0 = json.loads(request(server.port, get("/stats")).body)
    slow, slow_reader = connect(server.port)
    with slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        slow.sendall(get("/big"))
        time.sleep(0.3)  # not reading: the server's sends hit EAGAIN and it waits for writability
        for _ in range(5):  # meanwhile another client is served, more than once
            assert request(server.port, get("/users/3")).body == b'{"id":"3"}'
        stats1 = json.loads(request(server.port, get("/stats")).body)
        assert stats1["write_waits"] > stats0["write_waits"]  # the backpressure path was taken
        resp = slow_reader.response()
        pattern = b"0123456789abcdef"
        assert int(resp.header("content-length") or 0) == 4 * 1024 * 1024
        assert resp.body == pattern * (4 * 1024 * 1024 // 16)  # every byte, in order
        slow.sendall(get("/"))  # the connection is still usable
        assert slow_reader.response().body == b"Hello, World!"


# -- limits and malformed input ----------------------------------------------------------

def _expect_error_and_close(port: int, raw: bytes, status: int) -> None:
    sock, reader = connect(port)
    with sock:
        sock.sendall(raw)
        resp = reader.response()
        assert resp.status == status, resp.raw[:200]
        assert resp.header("connection") == "close"
        assert resp.header("x-content-type-options") == "nosniff"
        assert reader.at_eof()


def test_body_at_limit_is_accepted_and_one_over_is_413(server: ServerProcess) -> None:
    ok = request(server.port, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000)
    assert ok.status == 200 and len(ok.body) == 1000
    _expect_error_and_close(server.port, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n"
                            + b"x" * 1001, 413)


def test_chunked_body_over_limit_is_413(server: ServerProcess) -> None:
    raw = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n" + b"x" * 1001 + b"\r\n0\r\n\r\n"
    _expect_error_and_close(server.port, raw, 413)


def test_uri_at_limit_is_accepted_and_one_over_is_414(server: ServerProcess) -> None:
    limit = 8192  # HS_DEFAULT_MAX_URI
    target = "/files/" + "a" * (limit - len("/files/"))
    assert request(server.port, get(target)).status == 200
    _expect_error_and_close(server.port, get(target + "a"), 414)


def test_head_at_limit_is_accepted_and_one_over_is_431(server: ServerProcess) -> None:
    limit = 16384  # HS_DEFAULT_MAX_HEAD, request line + fields + final CRLF
    base = b"GET / HTTP/1.1\r\nHost: t\r\nX-Fill: \r\n\r\n"
    fill = b"f" * (limit - len(base))
    raw = b"GET / HTTP/1.1\r\nHost: t\r\nX-Fill: " + fill + b"\r\n\r\n"
    assert len(raw) == limit
    assert request(server.port, raw).status == 200
    over = b"GET / HTTP/1.1\r\nHost: t\r\nX-Fill: " + fill + b"f\r\n\r\n"
    _expect_error_and_close(server.port, over, 431)


def test_header_count_at_limit_is_accepted_and_one_over_is_431(server: ServerProcess) -> None:
    limit = 100  # HS_MAX_HEADERS, Host included
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(limit - 1))
    assert request(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n").status == 200
    _expect_error_and_close(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + fields + b"X-last: v\r\n\r\n", 431)


@pytest.mark.parametrize("raw,status", [
    (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET / HTTP/1.1\nHost: t\n\n", 400),  # bare LF
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400),
])
def test_malformed_requests_get_their_status_and_close(server: ServerProcess, raw: bytes, status: int) -> None:
    _expect_error_and_close(server.port, raw, status)


def test_server_still_serves_after_errors(client: httpx.Client) -> None:
    assert client.get("/").status_code == 200
