"""The Python side of the server, in-process: registration errors, handler
kinds, responses, the request object's lazy accessors, and the code generator.
No network; the HTTP behaviour is pinned in test_server_http.py."""

from __future__ import annotations

import json

import pytest

from hypersonic import Hypersonic, Response
from hypersonic._codegen import bake_response, c_string, fnv1a
from hypersonic._status import REASON_PHRASES, reason_phrase
from hypersonic.app import DEFAULT_SECURITY_HEADERS
from hypersonic.request import BadRequest, Request
from hypersonic.response import finalize

from _server_util import TEST_CACHE_DIR


def _app(**kw) -> Hypersonic:
    return Hypersonic(cache_dir=TEST_CACHE_DIR, **kw)


# -- registration ---------------------------------------------------------------

def test_path_without_leading_slash_is_rejected_naming_path() -> None:
    with pytest.raises(ValueError, match="path must start with '/'"):
        _app().get("health", lambda: "x")


def test_non_callable_handler_is_rejected_naming_handler() -> None:
    with pytest.raises(TypeError, match="handler .* must be callable"):
        _app().get("/x", "not a function")  # type: ignore[arg-type]


def test_duplicate_method_and_path_is_rejected() -> None:
    app = _app()
    app.get("/x", lambda: "a")
    with pytest.raises(ValueError, match="duplicate route: GET /x"):
        app.get("/x", lambda: "b")


def test_duplicate_pattern_with_other_parameter_name_is_rejected() -> None:
    app = _app()
    app.get("/u/:id", lambda req: "a")
    with pytest.raises(ValueError, match="duplicate route"):
        app.get("/u/:name", lambda req: "b")


def test_same_path_with_other_method_is_allowed() -> None:
    app = _app()
    app.get("/x", lambda: "a")
    app.post("/x", lambda: "b")
    assert app.route_counts() == (2, 0)


def test_bad_parameter_names_are_rejected() -> None:
    app = _app()
    with pytest.raises(ValueError, match="identifier"):
        app.get("/u/:", lambda req: "a")
    with pytest.raises(ValueError, match="used twice"):
        app.get("/u/:a/:a", lambda req: "a")
    with pytest.raises(ValueError, match="not allowed"):
        app.get("/with space", lambda: "a")


def test_handler_with_two_required_parameters_is_rejected() -> None:
    with pytest.raises(TypeError, match="requires 2 parameters"):
        _app().get("/x", lambda a, b: "x")


def test_parameterised_path_needs_a_handler_taking_the_request() -> None:
    with pytest.raises(TypeError, match="takes no request"):
        _app().get("/u/:id", lambda: "x")


def test_decorator_and_plain_call_forms_return_the_handler() -> None:
    app = _app()

    def h() -> str:
        return "x"

    assert app.get("/a")(h) is h
    assert app.post("/b", h) is h
    for method in ("put", "delete", "patch", "head", "options"):
        assert getattr(app, method)(f"/{method}", h) is h


def test_zero_parameter_handler_is_static_and_request_handler_is_dynamic() -> None:
    app = _app()
    app.get("/s", lambda: "s")
    app.get("/d", lambda req: "d")
    app.get("/forced", lambda: "f", dynamic=True)
    assert app.route_counts() == (1, 2)


def test_compile_without_routes_raises() -> None:
    with pytest.raises(RuntimeError, match="at least one route"):
        _app().compile()


def test_static_handler_returning_none_raises_at_compile() -> None:
    app = _app()
    app.get("/n", lambda: None)
    with pytest.raises(ValueError, match="returned None"):
        app.compile()


def test_static_handler_returning_unsupported_type_raises_at_compile() -> None:
    app = _app()
    app.get("/n", lambda: 42)
    with pytest.raises(TypeError, match="static handler for GET /n: handler returned int"):
        app.compile()


def test_compile_twice_and_late_registration_raise() -> None:
    app = _app()
    app.get("/", lambda: "x")
    app.compile()
    with pytest.raises(RuntimeError, match="already called"):
        app.compile()
    with pytest.raises(RuntimeError, match="after compile"):
        app.get("/late", lambda: "x")


def test_run_before_compile_raises() -> None:
    app = _app()
    app.get("/", lambda: "x")
    with pytest.raises(RuntimeError, match="compile"):
        app.run(port=0)


@pytest.mark.parametrize(
    "kwargs,exc,word",
    [
        ({"max_connections": 0}, ValueError, "max_connections"),
        ({"max_connections": "10"}, TypeError, "max_connections"),
        ({"max_request_size": -1}, ValueError, "max_request_size"),
        ({"keepalive_timeout": 0}, ValueError, "keepalive_timeout"),
        ({"recv_timeout": "5"}, TypeError, "recv_timeout"),
        ({"drain_timeout": -1}, ValueError, "drain_timeout"),
        ({"enable_security_headers": 1}, TypeError, "enable_security_headers"),
        ({"security_headers": ["X-A"]}, TypeError, "security_headers"),
        ({"security_headers": {"X-A": "a\r\nb"}}, ValueError, "security_headers"),
        ({"cache_dir": 3}, TypeError, "cache_dir"),
    ],
)
def test_bad_constructor_arguments_raise_naming_the_argument(kwargs, exc, word) -> None:
    with pytest.raises(exc, match=word):
        Hypersonic(**kwargs)


def test_security_headers_merge_override_and_remove() -> None:
    app = Hypersonic(security_headers={"X-Frame-Options": "SAMEORIGIN", "X-XSS-Protection": None,
                                       "Content-Security-Policy": "default-src 'self'"})
    assert dict(app.security_headers) == {
        "X-Frame-Options": "SAMEORIGIN",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "Content-Security-Policy": "default-src 'self'",
    }
    assert Hypersonic(enable_security_headers=False).security_headers == []
    assert dict(Hypersonic().security_headers) == dict(DEFAULT_SECURITY_HEADERS)


# -- responses ------------------------------------------------------------------

def test_response_rejects_bad_status_and_headers() -> None:
    with pytest.raises(ValueError, match="status"):
        Response("x", status=99)
    with pytest.raises(TypeError, match="status"):
        Response("x", status="200")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="headers"):
        Response("x", headers={"X-A": "1\r\nX-B: 2"})
    with pytest.raises(ValueError, match="headers"):
        Response("x", headers={"Bad Name": "1"})
    with pytest.raises(TypeError, match="body"):
        Response(object())


def test_finalize_orders_fields_and_lets_handler_headers_override_security() -> None:
    sec = [("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff")]
    status, block, body = finalize(Response({"a": "é"}, status=201, headers={"x-frame-options": "SAMEORIGIN",
                                                                            "Content-Length": "999"}), sec)
    assert status == 201
    assert body == json.dumps({"a": "é"}, ensure_ascii=False, separators=(",", ":")).encode()
    assert block == (b"Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
                     b"x-frame-options: SAMEORIGIN\r\n")


def test_finalize_drops_fields_the_server_owns() -> None:
    _, block, _ = finalize(Response("x", headers=[("Date", "x"), ("Connection", "close"), ("Content-Length", "9"),
                                                  ("Transfer-Encoding", "chunked"), ("X-Kept", "1")]), [])
    assert block == b"Content-Type: text/plain; charset=utf-8\r\nX-Kept: 1\r\n"


def test_finalize_tuple_form_and_no_content_statuses() -> None:
    status, block, body = finalize((204, [("X-A", "1"), ("X-A", "2")], "ignored"), [])
    assert (status, body) == (204, b"")
    assert block.count(b"X-A:") == 2


def test_every_rfc9110_status_has_its_reason_phrase() -> None:
    assert reason_phrase(413) == "Content Too Large"
    assert reason_phrase(422) == "Unprocessable Content"
    assert reason_phrase(418) == "Unused"
    assert reason_phrase(299) == ""
    rfc9110 = [100, 101, 200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 304, 305, 306, 307, 308, 400,
               401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 421,
               422, 426, 500, 501, 502, 503, 504, 505]
    assert all(code in REASON_PHRASES for code in rfc9110)


# -- request object ---------------------------------------------------------------

def _request(head: bytes, body: bytes = b"", query: str = "", names=(), values=()) -> Request:
    return Request("POST", "/p", query, head, body, tuple(names), tuple(values))


def test_request_headers_are_case_insensitive_and_keep_repeats() -> None:
    req = _request(b"POST /p HTTP/1.1\r\nHost: h\r\nX-Multi: a\r\nx-multi: b\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n")
    assert req.header("X-MULTI") == "a, b"
    assert req.headers.getall("x-multi") == ["a", "b"]
    assert req.header("cookie") == "a=1; b=2"
    assert req.header("absent", "dflt") == "dflt"
    assert "HOST" in req.headers


def test_request_cookies_query_and_params_decode() -> None:
    req = _request(b"GET / HTTP/1.1\r\nCookie: sid=\"abc\"; theme=dark; sid=second\r\n\r\n",
                   query="a=1&a=2&sp=x+y&pct=%41%2F&empty=&flag", names=("name",), values=("j%20d",))
    assert req.cookies == {"sid": "abc", "theme": "dark"}
    assert req.cookie("theme") == "dark"
    assert req.query_param("a") == "1" and req.query.getall("a") == ["1", "2"]
    assert req.query_param("sp") == "x y" and req.query_param("pct") == "A/"
    assert req.query_param("empty") == "" and req.query_param("flag") == ""
    assert req.param("name") == "j d" and req.params == {"name": "j d"}


def test_request_form_and_json() -> None:
    req = _request(b"POST / HTTP/1.1\r\n\r\n", body=b"a=1+2&b=%C3%A9&c=&a=3")
    assert req.form()["a"] == "1 2" and req.form().getall("a") == ["1 2", "3"]
    assert req.form()["b"] == "é" and req.form()["c"] == ""
    assert _request(b"", body=b'{"k": [1]}').json() == {"k": [1]}
    with pytest.raises(BadRequest, match="not valid JSON"):
        _request(b"", body=b"{nope").json()


# -- code generation -----------------------------------------------------------------

def test_c_string_escapes_every_byte_value() -> None:
    import ast

    data = bytes(range(256)) + b'??=' + b"\\0\"1"
    literal = c_string(data)
    # C and Python agree on these escapes (octal, \\r \\n \\t \\" \\\\) except \\?, C's trigraph guard
    parts = [ast.literal_eval("b" + line.strip().replace("\\?", "?")) for line in literal.split("\n")]
    assert b"".join(parts) == data


def test_baked_response_offsets_point_at_date_and_empty_line() -> None:
    data, head_len, date_off = bake_response(200, b"Content-Type: text/plain\r\n", b"hi")
    assert data[date_off:date_off + 29] == b"Thu, 01 Jan 1970 00:00:00 GMT"
    assert data[head_len:head_len + 4] == b"\r\nhi"
    assert b"Content-Length: 2\r\n" in data


def test_fnv1a_matches_reference_vectors() -> None:
    assert fnv1a(b"") == 0x811C9DC5
    assert fnv1a(b"a") == 0xE40C292C
