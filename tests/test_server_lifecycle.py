"""Timeouts, connection limits, configuration variants and the stop/drain
cycle of a real server subprocess. Timeouts here are 1 s; every wait is
bounded (a few seconds) and asserts what happens, never how fast."""

from __future__ import annotations

import json
import signal
import socket
import time
from typing import Iterator

import httpx
import pytest

from _http_wire import connect, get, request
from _server_util import ServerProcess, start_app

TIGHT_APP = """
import time
from hypersonic import Hypersonic

app = Hypersonic(keepalive_timeout=1, recv_timeout=1, max_connections=3, drain_timeout=5,
                 security_headers={"X-Frame-Options": "SAMEORIGIN", "X-XSS-Protection": None,
                                   "Content-Security-Policy": "default-src 'self'"})

@app.get("/")
def index():
    return "hi"

@app.get("/dyn")
def dyn(req):
    return "dyn"

@app.get("/stats")
def stats(req):
    return app.stats()

@app.get("/sleep")
def sleep(req):
    time.sleep(float(req.query_param("s", "1")))
    return "slept"

@app.get("/interrupt")
def interrupt(req):
    raise KeyboardInterrupt
"""

NO_SECURITY_APP = """
from hypersonic import Hypersonic

app = Hypersonic(enable_security_headers=False)

@app.get("/")
def index():
    return "plain"

@app.get("/dyn")
def dyn(req):
    return {"d": 1}
"""

#: Bound on waiting for a 1-second timeout to act (the loop checks once a second).
TIMEOUT_BOUND = 6.0


@pytest.fixture
def tight(tmp_path) -> Iterator[ServerProcess]:
    srv = start_app(TIGHT_APP, tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


def _closed_within(reader, seconds: float) -> bool:
    reader.sock.settimeout(seconds)
    try:
        return reader.at_eof()
    except socket.timeout:
        return False


def test_security_headers_overridden_removed_and_added_on_every_response_kind(tight: ServerProcess) -> None:
    for raw in (get("/"), get("/dyn"), get("/nope"), get("/", method="POST")):
        resp = request(tight.port, raw)
        assert resp.header("x-frame-options") == "SAMEORIGIN"
        assert resp.header("x-xss-protection") is None
        assert resp.header("content-security-policy") == "default-src 'self'"
        assert resp.header("x-content-type-options") == "nosniff"
    sock, reader = connect(tight.port)
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")  # no Host: 400
        resp = reader.response()
        assert resp.status == 400 and resp.header("x-frame-options") == "SAMEORIGIN"


def test_security_headers_can_be_disabled(tmp_path) -> None:
    with start_app(NO_SECURITY_APP, tmp_path) as srv:
        for raw in (get("/"), get("/dyn"), get("/nope")):
            resp = request(srv.port, raw)
            names = {n.lower() for n, _ in resp.headers}
            assert not names & {b"x-frame-options", b"x-content-type-options", b"x-xss-protection",
                                b"referrer-policy"}
            assert resp.header("date") and resp.header("content-length")


def test_idle_keepalive_connection_closed_after_keepalive_timeout(tight: ServerProcess) -> None:
    sock, reader = connect(tight.port)
    with sock:
        sock.sendall(get("/"))
        assert reader.response().body == b"hi"
        assert _closed_within(reader, TIMEOUT_BOUND)


def test_incomplete_head_gets_408_after_recv_timeout(tight: ServerProcess) -> None:
    sock, reader = connect(tight.port)
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")  # never finished
        resp = reader.response()
        assert resp.status == 408 and resp.header("connection") == "close"
        assert _closed_within(reader, TIMEOUT_BOUND)


def test_stalled_body_gets_408_after_recv_timeout(tight: ServerProcess) -> None:
    sock, reader = connect(tight.port)
    with sock:
        sock.sendall(b"POST /dyn HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")  # 7 bytes never come
        resp = reader.response()
        assert resp.status == 408 and resp.header("connection") == "close"
        assert _closed_within(reader, TIMEOUT_BOUND)


def test_slowloris_trickle_still_gets_408(tight: ServerProcess) -> None:
    sock, reader = connect(tight.port)
    with sock:
        sock.settimeout(0.4)
        got = b""
        for i in range(30):  # one byte every 0.4 s: progress never completes the head
            try:
                sock.sendall(b"X-a: b\r\n"[i % 8:i % 8 + 1] if i else b"GET / HTTP/1.1\r\nHost: t\r\n")
            except OSError:
                break
            try:
                chunk = sock.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                break
            got += chunk
            if b"\r\n\r\n" in got:
                break
        assert got.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_at_max_connections_new_clients_wait_then_are_served(tight: ServerProcess) -> None:
    held = [connect(tight.port) for _ in range(3)]
    try:
        for sock, reader in held:
            sock.sendall(get("/"))
            assert reader.response().body == b"hi"
        sock0, reader0 = held[0]
        sock0.sendall(get("/stats"))
        before = json.loads(reader0.response().body)
        waiting, waiting_reader = connect(tight.port)  # completes in the kernel backlog
        with waiting:
            waiting.sendall(get("/"))
            waiting.settimeout(0.8)
            with pytest.raises(socket.timeout):
                waiting.recv(1)  # not accepted yet: no answer
            sock0.sendall(get("/stats"))
            after = json.loads(reader0.response().body)
            # no busy loop while full: the loop woke only for our requests and its 1 s tick
            assert after["wakeups"] - before["wakeups"] < 20
            assert after["connections"] == before["connections"]
            held[1][0].close()  # a slot frees: the waiting client is accepted and answered
            waiting.settimeout(TIMEOUT_BOUND)
            assert waiting_reader.response().body == b"hi"
    finally:
        for sock, _ in held:
            sock.close()


def test_sigterm_finishes_in_flight_request_then_exits_zero(tight: ServerProcess) -> None:
    busy, busy_reader = connect(tight.port)
    idle, idle_reader = connect(tight.port)
    with busy, idle:
        idle.sendall(get("/"))
        assert idle_reader.response().body == b"hi"
        busy.sendall(get("/sleep?s=1"))
        time.sleep(0.3)  # the handler is running
        tight.send_signal(signal.SIGTERM)
        resp = busy_reader.response()
        assert resp.body == b"slept"
        assert _closed_within(busy_reader, TIMEOUT_BOUND)
        assert _closed_within(idle_reader, TIMEOUT_BOUND)
    assert tight.wait(timeout=TIMEOUT_BOUND) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", tight.port), timeout=1).close()


def test_connection_accepted_before_sigterm_gets_its_first_request_answered(tight: ServerProcess) -> None:
    # A client that connected before the stop but whose request arrives just after
    # it started did nothing wrong: its request is answered (with Connection: close),
    # not reset as an idle keep-alive connection would be.
    # (No handler may be running: the loop must be free to start the drain at once.)
    fresh, fresh_reader = connect(tight.port)
    with fresh:
        time.sleep(0.3)  # accepted by the idle loop
        tight.send_signal(signal.SIGTERM)
        time.sleep(0.2)  # the drain has started (well inside the fresh-connection grace)
        fresh.sendall(get("/"))
        resp = fresh_reader.response()
        assert resp.body == b"hi"
        assert resp.header("connection") == "close"
    assert tight.wait(timeout=TIMEOUT_BOUND) == 0


def test_keyboard_interrupt_in_handler_stops_the_worker(tight: ServerProcess) -> None:
    resp = request(tight.port, get("/interrupt"))
    assert resp.status == 500 and resp.header("connection") == "close"
    assert tight.wait(timeout=TIMEOUT_BOUND) != 0  # KeyboardInterrupt re-raised after the drain
    assert "KeyboardInterrupt" in tight.output()


def test_run_logs_one_startup_line(tight: ServerProcess) -> None:
    lines = [l for l in tight.output().splitlines() if "hypersonic serving on" in l]
    assert len(lines) == 1
    assert f"http://127.0.0.1:{tight.port}" in lines[0]
    assert "workers=1" in lines[0] and "backend=" in lines[0]
    assert "routes: 1 static, 4 dynamic" in lines[0]


def test_httpx_client_sees_consistent_keepalive(tight: ServerProcess) -> None:
    with httpx.Client(base_url=tight.url, timeout=5) as client:
        assert [client.get("/").text for _ in range(5)] == ["hi"] * 5
