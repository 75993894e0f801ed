"""The access log (issue 7 point 1): one line per response written by the C loop,
static, dynamic and error responses alike, in the common/combined format or a
format string; flushed within about a second without traffic and on SIGTERM;
several workers append whole lines to one file; off by default.

Every server runs in a subprocess over real TCP (tests/_server_util.py)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import List

import pytest
from _http_wire import connect, get, request
from _server_util import ServerProcess, free_port, start_app

from hypersonic import Hypersonic
from hypersonic._accesslog import compile_format, resolve_destination

#: How long a test waits for lines to reach the file (the loop flushes at least once a second).
FLUSH_WAIT_S = 10.0
_POLL_S = 0.05

# 127.0.0.1 - - [29/Nov/2026:20:11:46 +0000] "GET /hello HTTP/1.1" 200 2
COMMON_RE = re.compile(
    r'^(?P<addr>\S+) - - \[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] '
    r'"(?P<request>[^"]*)" (?P<status>\d{3}|-) (?P<bytes>\d+)$'
)
COMBINED_RE = re.compile(COMMON_RE.pattern[:-1] + r' "(?P<referer>[^"]*)" "(?P<agent>[^"]*)"$')


def app_source(log_path: object, fmt: str = "common", extra: str = "") -> str:
    """An app with a static, a dynamic, and a small-body route, logging to log_path."""
    return textwrap.dedent(f"""
        from hypersonic import Hypersonic

        app = Hypersonic(max_request_size=100, access_log={log_path!r}, access_log_format={fmt!r}{extra})

        @app.get("/static")
        def static():
            return "Hello, World!"

        @app.get("/users/:id")
        def user(req):
            return {{"id": req.param("id")}}

        @app.post("/echo")
        def echo(req):
            return req.body
        """)


def read_lines(path: Path) -> List[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_lines(path: Path, count: int, timeout: float = FLUSH_WAIT_S) -> List[str]:
    """The file's lines once it has at least ``count`` (bounded wait; fails with what it has)."""
    deadline = time.monotonic() + timeout
    lines = read_lines(path)
    while len(lines) < count and time.monotonic() < deadline:
        time.sleep(_POLL_S)
        lines = read_lines(path)
    assert len(lines) >= count, f"expected {count} access log lines within {timeout}s, got {lines}"
    return lines


def parse_common(line: str) -> "re.Match[str]":
    match = COMMON_RE.match(line)
    assert match, f"not a common log format line: {line!r}"
    return match


def test_static_dynamic_and_error_responses_are_each_logged_with_their_fields(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with start_app(app_source(str(log)), tmp_path) as server:
        port = server.port
        assert request(port, get("/static")).status == 200
        assert request(port, get("/users/42?x=1")).status == 200
        assert request(port, get("/missing")).status == 404
        assert request(port, get("/static", method="DELETE")).status == 405
        assert request(port, b"GET /static HTTP/1.1\r\n\r\n").status == 400  # no Host
        assert request(port, get("/echo", "Content-Length: 500\r\n", method="POST")).status == 413
        assert request(port, b"BAD\r\n\r\n").status == 400
        assert request(port, get("/static", method="HEAD"), head_request=True).status == 200
        lines = wait_lines(log, 8)
    fields = [parse_common(line) for line in lines]
    got = [(m["addr"], m["request"], m["status"], m["bytes"]) for m in fields]
    assert got == [
        ("127.0.0.1", "GET /static HTTP/1.1", "200", str(len("Hello, World!"))),
        ("127.0.0.1", "GET /users/42?x=1 HTTP/1.1", "200", str(len('{"id":"42"}'))),
        ("127.0.0.1", "GET /missing HTTP/1.1", "404", str(len("Not Found"))),
        ("127.0.0.1", "DELETE /static HTTP/1.1", "405", str(len("Method Not Allowed"))),
        ("127.0.0.1", "GET /static HTTP/1.1", "400", str(len("Bad Request"))),
        ("127.0.0.1", "POST /echo HTTP/1.1", "413", str(len("Content Too Large"))),
        ("127.0.0.1", "-", "400", str(len("Bad Request"))),
        ("127.0.0.1", "HEAD /static HTTP/1.1", "200", "0"),
    ]


def test_combined_format_adds_referer_and_user_agent(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with start_app(app_source(str(log), "combined"), tmp_path) as server:
        request(server.port, get("/static", "Referer: http://ref.example/\r\nUser-Agent: probe/1.0\r\n"))
        request(server.port, get("/static"))
        lines = wait_lines(log, 2)
    first, second = (COMBINED_RE.match(line) for line in lines)
    assert first and second, lines
    assert (first["request"], first["referer"], first["agent"]) == ("GET /static HTTP/1.1", "http://ref.example/",
                                                                     "probe/1.0")
    assert (second["referer"], second["agent"]) == ("-", "-")


def test_custom_format_with_header_request_id_bytes_and_duration(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    fmt = ("$remote_addr|$request_method|$request_uri|$uri|$args|$status|$bytes_sent|$body_bytes_sent|"
           "$request_time_us|$request_id|$http_x_tenant|${server_protocol}$$|$pid")
    with start_app(app_source(str(log), fmt), tmp_path) as server:
        response = request(server.port, get("/users/7?a=b", 'X-Request-ID: req-1\r\nX-Tenant: acme "co" \\ \u00e9\r\n'))
        request(server.port, get("/static", version="1.0"))
        lines = wait_lines(log, 2)
    first = lines[0].split("|")
    assert first[:6] == ["127.0.0.1", "GET", "/users/7?a=b", "/users/7", "a=b", "200"]
    body_len = len(response.body)
    assert int(first[7]) == body_len
    assert int(first[6]) > body_len  # the whole response: status line and fields too
    assert first[8].isdigit()
    assert first[9:12] == ["req-1", "acme \\x22co\\x22 \\x5C \\xC3\\xA9", "HTTP/1.1$"]  # escaped as nginx does
    assert first[12] == str(server.pid)
    second = lines[1].split("|")
    assert second[1:6] == ["GET", "/static", "/static", "-", "200"]
    assert second[9:12] == ["-", "-", "HTTP/1.0$"]


def test_lines_reach_the_file_within_about_a_second_without_more_traffic(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with start_app(app_source(str(log)), tmp_path) as server:
        sock, reader = connect(server.port)
        with sock:  # the connection stays open and idle: only the loop's tick can flush
            sock.sendall(get("/static"))
            assert reader.response().status == 200
            lines = wait_lines(log, 1, timeout=5.0)
            assert server.alive()
    assert '"GET /static HTTP/1.1" 200' in lines[0]


def test_sigterm_flushes_the_buffered_lines(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    server = start_app(app_source(str(log)), tmp_path)
    try:
        for i in range(20):
            request(server.port, get(f"/users/{i}"))
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.stop()
    lines = read_lines(log)  # no waiting: the worker has exited
    assert [parse_common(line)["request"] for line in lines] == [f"GET /users/{i} HTTP/1.1" for i in range(20)]


def test_several_workers_append_whole_lines_to_one_file(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    clients, per_client = 8, 60
    errors: List[BaseException] = []
    with start_app(app_source(str(log), "$request_id $status $http_x_pad"), tmp_path, workers=3) as server:
        pad = "p" * 300  # long lines make a torn write visible

        def client(n: int) -> None:
            try:
                for i in range(per_client):
                    sock, reader = connect(server.port)
                    with sock:
                        sock.sendall(get("/static", f"X-Request-ID: c{n}-{i}\r\nX-Pad: {pad}\r\n"))
                        assert reader.response().status == 200
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        lines = wait_lines(log, clients * per_client)
    expected = {f"c{n}-{i}" for n in range(clients) for i in range(per_client)}
    seen = []
    for line in lines:
        request_id, status, padding = line.split(" ")
        assert (status, padding) == ("200", pad), line
        seen.append(request_id)
    assert sorted(seen) == sorted(expected)


def test_access_log_true_writes_to_standard_output(tmp_path: Path) -> None:
    with start_app(app_source(True), tmp_path) as server:
        request(server.port, get("/static"))
        deadline = time.monotonic() + FLUSH_WAIT_S
        while '"GET /static HTTP/1.1" 200' not in server.output() and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        output = server.output()
    assert any(COMMON_RE.match(line) for line in output.splitlines()), output


def test_off_by_default_writes_nothing(tmp_path: Path) -> None:
    source = app_source(None).replace("access_log=None, access_log_format='common'", "")
    assert "access_log" not in source
    before = set(tmp_path.iterdir())
    with start_app(source, tmp_path) as server:
        for target in ("/static", "/users/1", "/missing"):
            request(server.port, get(target))
        time.sleep(1.5)  # past the once-a-second flush: a log, if any, would be written by now
    assert server.stop() == 0
    output = server.output()
    assert "HTTP/1.1\" 200" not in output and "/missing" not in output, output
    created = {p.name for p in set(tmp_path.iterdir()) - before}
    assert created <= {"hs_test_app.py", "run_hs_test_app.py", "hs_test_app.log", "__pycache__"}, created


@pytest.mark.parametrize("fmt, bad", [
    ("$remote_addr $nope", "$nope"),
    ("${status} ${http_}", "$http_"),
    ("cost: 5$", "'$' at position 7"),
    ("$request\n", "control character"),
])
def test_bad_format_raises_a_clear_error_naming_the_field(fmt: str, bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(bad)):
        Hypersonic(access_log=True, access_log_format=fmt)
    app = Hypersonic(access_log=True)
    app.get("/x", lambda: "x")
    app.access_log_format = fmt  # e.g. set by the command line after construction
    with pytest.raises(ValueError, match=re.escape(bad)):
        app.compile()
    assert not app.compiled


def test_format_compiles_to_the_ops_the_c_loop_knows() -> None:
    assert compile_format("$status${request_id}$$x") == (("status", b""), ("request_id", b"x-request-id"),
                                                         ("literal", b"$x"))
    assert compile_format("$request_id", "X-Correlation-ID") == (("request_id", b"x-correlation-id"),)
    assert compile_format("$http_x_forwarded_for") == (("header", b"x-forwarded-for"),)
    assert compile_format("$sent_http_content_type") == (("sent_header", b"content-type"),)
    assert compile_format("combined")[-2:] == (("header", b"user-agent"), ("literal", b'"'))


@pytest.mark.parametrize("value, expected", [(None, None), (False, None), (True, "-"), ("-", "-"),
                                             ("/var/log/a.log", "/var/log/a.log"), (Path("a.log"), "a.log")])
def test_access_log_destinations(value: object, expected: object) -> None:
    assert resolve_destination(value) == expected


def test_bad_access_log_argument_is_named() -> None:
    with pytest.raises(TypeError, match="access_log"):
        Hypersonic(access_log=3)
    with pytest.raises(ValueError, match="access_log"):
        Hypersonic(access_log="")
    with pytest.raises(TypeError, match="access_log_format"):
        Hypersonic(access_log_format=None)


def test_unwritable_log_path_fails_run_before_binding_with_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "access.log"
    app = Hypersonic(access_log=str(missing))
    app.get("/x", lambda: "x")
    app.compile()  # prebuilding elsewhere needs no log directory
    with pytest.raises(OSError, match="no-such-dir"):
        app.run(port=free_port(), host="127.0.0.1")


def test_cli_unwritable_log_path_is_a_startup_error_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / "cli_app.py").write_text(CLI_APP)
    result = subprocess.run([sys.executable, "-m", "hypersonic", "cli_app:app", "--host", "127.0.0.1",
                             "--port", str(free_port()), "--access-log", str(tmp_path / "missing" / "a.log")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")})
    assert result.returncode == 1, result
    assert "access_log: cannot append to" in result.stderr and "missing" in result.stderr, result.stderr
    assert "cannot listen" not in result.stderr


def _raw_exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def test_pipelined_requests_each_get_a_line_in_order(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with start_app(app_source(str(log), "$request_uri $status"), tmp_path) as server:
        raw = get("/static") + get("/users/1") + get("/nope") + get("/static", "Connection: close\r\n")
        answer = _raw_exchange(server.port, raw)
        assert answer.count(b"HTTP/1.1 ") == 4
        lines = wait_lines(log, 4)
    assert lines == ["/static 200", "/users/1 200", "/nope 404", "/static 200"]


CLI_APP = """
from hypersonic import Hypersonic

app = Hypersonic()

@app.get("/static")
def static():
    return "Hello, World!"
"""


def test_cli_flag_and_environment_turn_the_log_on(tmp_path: Path) -> None:
    (tmp_path / "cli_app.py").write_text(CLI_APP)
    flag_log, env_log = tmp_path / "flag.log", tmp_path / "env.log"
    port = free_port()
    argv = [sys.executable, "-m", "hypersonic", "cli_app:app", "--host", "127.0.0.1", "--port", str(port),
            "--access-log", str(flag_log), "--access-log-format", "flag $status $request_uri"]
    with ServerProcess(argv, port, log_path=tmp_path / "flag.out", cwd=tmp_path):
        request(port, get("/static"))
        assert wait_lines(flag_log, 1) == ["flag 200 /static"]
    port = free_port()
    argv = [sys.executable, "-m", "hypersonic", "cli_app:app", "--host", "127.0.0.1", "--port", str(port)]
    env = {"HYPERSONIC_ACCESS_LOG": str(env_log), "HYPERSONIC_ACCESS_LOG_FORMAT": "env $status"}
    with ServerProcess(argv, port, log_path=tmp_path / "env.out", cwd=tmp_path, env=env):
        request(port, get("/nope"))
        assert wait_lines(env_log, 1) == ["env 404"]


def test_cli_bad_format_is_a_usage_error_naming_the_variable(tmp_path: Path) -> None:
    (tmp_path / "cli_app.py").write_text(CLI_APP)
    result = subprocess.run([sys.executable, "-m", "hypersonic", "cli_app:app", "--port", "0",
                             "--access-log", "-", "--access-log-format", "$status $bogus"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")})
    assert result.returncode == 2, result
    assert "$bogus" in result.stderr


def _ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("host, client_host, expected", [
    ("::1", "::1", "::1"),
    ("::", "127.0.0.1", "127.0.0.1"),  # dual stack: an IPv4 client is logged as IPv4, not ::ffff:...
])
def test_remote_address_of_ipv6_and_dual_stack_clients(tmp_path: Path, host: str, client_host: str,
                                                        expected: str) -> None:
    if not _ipv6_loopback_available():
        pytest.skip("no IPv6 loopback")
    log = tmp_path / "access.log"
    with start_app(app_source(str(log), "$remote_addr $status"), tmp_path, host=host) as server:
        with socket.create_connection((client_host, server.port), timeout=10) as sock:
            sock.sendall(get("/static", "Connection: close\r\n"))
            while sock.recv(65536):
                pass
        lines = wait_lines(log, 1)
    assert lines[-1] == f"{expected} 200"


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix domain sockets")
def test_unix_socket_clients_are_logged_as_unix(tmp_path: Path) -> None:
    from _ops_util import CliServer

    (tmp_path / "cli_app.py").write_text(CLI_APP.replace('"/static"', '"/"'))
    log = tmp_path / "access.log"
    with CliServer(tmp_path, "cli_app:app", "--access-log", str(log), "--access-log-format", "$remote_addr $status",
                   uds=str(tmp_path / "s.sock")):
        lines = wait_lines(log, 1)  # the readiness probe's GET /
    assert lines[0] == "unix 200"


def test_timeouts_chunked_body_errors_and_handler_failures_are_logged(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    source = app_source(str(log), "$request|$status|$request_time_us|$http_x_id", ", recv_timeout=1") + textwrap.dedent("""
        @app.get("/boom")
        def boom(req):
            raise RuntimeError("handler failure")
        """)
    with start_app(source, tmp_path) as server:
        assert request(server.port, get("/boom", "X-Id: b\r\n")).status == 500
        chunked = (b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Id: c\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"c8\r\n" + b"x" * 200 + b"\r\n0\r\n\r\n")
        assert request(server.port, chunked).status == 413  # decoded body over max_request_size
        sock, reader = connect(server.port)
        with sock:  # a head that never completes: 408 after recv_timeout
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Id: s\r\n")
            assert reader.response().status == 408
        lines = wait_lines(log, 3)
    rows = [line.split("|") for line in lines]
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("GET /boom HTTP/1.1", "500", "b"),
        ("POST /echo HTTP/1.1", "413", "c"),
        ("GET /slow HTTP/1.1", "408", "-"),  # fields of an unfinished head are not trusted
    ]
    assert int(rows[2][2]) >= 1_000_000  # the duration runs from the request's first byte


def test_pure_python_fallback_warns_that_it_writes_no_access_log(monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture,
                                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("HYPERSONIC_JIT", "0")  # force the pure-Python server
    app = Hypersonic(access_log=str(tmp_path / "access.log"), cache_dir=tmp_path / "cache")
    app.get("/x", lambda: "x")
    with caplog.at_level("WARNING", logger="hypersonic"):
        app.compile()
    assert app.backend() == "python"
    assert any("access_log" in record.getMessage() for record in caplog.records), caplog.text


def test_every_protocol_error_status_is_logged(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    cases = [
        (b"GET /static HTTP/2.0\r\nHost: t\r\n\r\n", 505, "GET /static"),  # version unknown: no protocol
        (b"BREW /static HTTP/1.1\r\nHost: t\r\n\r\n", 501, "BREW /static HTTP/1.1"),  # unknown method
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
         "POST /echo HTTP/1.1"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "-"),
        (b"GET /static HTTP/1.1\r\nHost: t\r\n" + b"X-Big: " + b"b" * 20000 + b"\r\n\r\n", 431, "GET /static HTTP/1.1"),
    ]
    with start_app(app_source(str(log), "$request|$status"), tmp_path) as server:
        for raw, status, _ in cases:
            assert request(server.port, raw).status == status
        lines = wait_lines(log, len(cases))
    assert lines == [f"{logged}|{status}" for _, status, logged in cases]


def test_request_id_logs_the_generated_id_and_sent_headers_are_logged(tmp_path: Path) -> None:
    """With app.request_id(), $request_id is the id the response carried (generated or the
    client's); $sent_http_* reads any response header; static routes the hook leaves baked log
    the client's id."""
    log = tmp_path / "access.log"
    source = app_source(str(log), "$request_id|$sent_http_content_type|$sent_http_x_absent|$uri") + (
        "\napp.request_id(include_static=False)\n")
    with start_app(source, tmp_path) as server:
        generated = request(server.port, get("/users/7"))
        kept = request(server.port, get("/users/8", extra="X-Request-ID: client-9\r\n"))
        static = request(server.port, get("/static", extra="X-Request-ID: client-static\r\n"))
        missing = request(server.port, get("/nowhere"))
        lines = wait_lines(log, 4)
    rid = generated.header("x-request-id")
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert kept.header("x-request-id") == "client-9"
    assert static.header("x-request-id") is None
    assert missing.status == 404
    assert lines[:4] == [
        f"{rid}|application/json|-|/users/7",
        "client-9|application/json|-|/users/8",
        "client-static|text/plain; charset=utf-8|-|/static",
        "-|text/plain; charset=utf-8|-|/nowhere",
    ]
