"""Streaming responses (app.get(..., streaming=True) -> handler(req, stream)) over
real TCP, against both servers: the native C loop and the pure-Python fallback
(HYPERSONIC_JIT=0) run the same tests.

Pinned: chunked framing (checked by h11), headers()/write()/end()/abort(),
identity framing with Content-Length, HTTP/1.0 (close-delimited), HEAD,
keep-alive and pipelining after a stream, errors before/after the headers,
the loop serving others while a stream runs, backpressure against a client that
does not read (the handler blocks, memory stays bounded), disconnect detection
(idle and while blocked), and drain on SIGTERM with an open stream."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path
from typing import Iterator, Tuple

import h11
import httpx
import pytest

from _server_util import ServerProcess
from _stream_util import (SERVERS, H11Reader, connect, header, read_state, read_until_close, request_bytes, rss_kib,
                          serve, split_lines, wait_for)

APP = r'''
import os, time, threading
from pathlib import Path
from hypersonic import Hypersonic, StreamClosed

STATE = Path(os.environ["HS_STATE_DIR"])
app = Hypersonic(drain_timeout=1)

def note(name, text):
    tmp = STATE / (name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, STATE / name)

@app.get("/")
def index():
    return "static"

@app.get("/dyn")
def dyn(req):
    return "dynamic"

@app.get("/count", streaming=True)
def count(req, stream):
    n = int(req.query_param("n") or 3)
    stream.headers(201, {"X-Stream": "yes"}, content_type="text/x-count")
    for i in range(n):
        stream.write(f"line {i}\n")
    stream.end()

@app.post("/echo-stream", streaming=True)
def echo_stream(req, stream):
    for piece in (req.body[:3], req.body[3:]):
        stream.write(piece)

@app.get("/default", streaming=True)
def default(req, stream):
    stream.write("hello ")
    stream.write(b"world")

@app.get("/empty", streaming=True)
def empty(req, stream):
    pass

@app.get("/length", streaming=True)
def length(req, stream):
    stream.headers(200, {"Content-Length": "10"})
    stream.write("01234")
    stream.write("56789")

@app.get("/length-short", streaming=True)
def length_short(req, stream):
    stream.headers(200, {"Content-Length": "10"})
    stream.write("01234")
    try:
        stream.end()
    except ValueError as exc:
        note("length-short", str(exc))

@app.get("/length-over", streaming=True)
def length_over(req, stream):
    stream.headers(200, {"Content-Length": "3"})
    try:
        stream.write("too long")
    except ValueError:
        note("length-over", "refused")
    stream.write("abc")

@app.get("/raise-before", streaming=True)
def raise_before(req, stream):
    raise RuntimeError("before headers")

@app.get("/raise-after", streaming=True)
def raise_after(req, stream):
    stream.write("partial")
    raise RuntimeError("after headers")

@app.get("/abort", streaming=True)
def abort(req, stream):
    stream.write("partial")
    stream.abort()
    try:
        stream.write("more")
    except StreamClosed:
        note("abort", "closed=%s" % stream.closed)

@app.get("/slow", streaming=True)
def slow(req, stream):
    # open until the client is gone; tells which way it learned it
    stream.write("ready\n")
    closed = stream.wait_closed(30)
    note("slow-" + (req.query_param("tag") or "x"), "closed" if closed else "timeout")

@app.get("/big", streaming=True)
def big(req, stream):
    tag = req.query_param("tag")
    total = int(req.query_param("mb")) * 1024 * 1024
    piece = bytes(range(256)) * 256  # 64 KiB
    sent = 0
    try:
        while sent < total:
            sent += stream.write(piece)
            note("big-" + tag, str(sent))
    except StreamClosed:
        note("big-" + tag + "-end", "closed after %d" % sent)
        return
    note("big-" + tag + "-end", "done %d" % sent)

@app.get("/forever", streaming=True)
def forever(req, stream):
    try:
        while True:
            stream.write("tick\n")
            time.sleep(0.05)
    except StreamClosed:
        pass
'''


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[ServerProcess, Path]]:
    proc, state = serve(APP, tmp_path_factory, request.param, "stream")
    try:
        yield proc, state
    finally:
        proc.stop()


def test_stream_is_chunked_with_status_headers_and_security_headers(server):
    proc, _ = server
    with connect(proc.port) as sock:
        reader = H11Reader(sock)
        reader.send("GET", "/count?n=5")
        resp, body = reader.response()
    assert resp.status_code == 201
    assert header(resp, "transfer-encoding") == "chunked"
    assert header(resp, "content-type") == "text/x-count"
    assert header(resp, "x-stream") == "yes"
    assert header(resp, "x-content-type-options") == "nosniff"
    assert header(resp, "date")
    assert body == b"".join(b"line %d\n" % i for i in range(5))


def test_each_write_is_one_chunk_on_the_wire(server):
    proc, _ = server
    with connect(proc.port) as sock:
        sock.sendall(request_bytes("/count?n=2", headers={"Connection": "close"}))
        raw = read_until_close(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    assert body == b"7\r\nline 0\n\r\n7\r\nline 1\n\r\n0\r\n\r\n"


def test_write_without_headers_sends_200_text_plain_and_return_ends(server):
    proc, _ = server
    resp = httpx.get(f"{proc.url}/default", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    assert resp.text == "hello world"
    assert resp.headers["x-frame-options"] == "DENY"


def test_handler_that_writes_nothing_sends_an_empty_complete_body(server):
    proc, _ = server
    with connect(proc.port) as sock:
        reader = H11Reader(sock)
        reader.send("GET", "/empty")
        resp, body = reader.response()
    assert resp.status_code == 200 and body == b""


def test_request_body_reaches_the_streaming_handler(server):
    proc, _ = server
    resp = httpx.post(f"{proc.url}/echo-stream", content=b"abcdefgh", timeout=10)
    assert resp.status_code == 200 and resp.content == b"abcdefgh"


def test_content_length_gives_identity_framing(server):
    proc, _ = server
    with connect(proc.port) as sock:
        reader = H11Reader(sock)
        reader.send("GET", "/length")
        resp, body = reader.response()
    assert header(resp, "content-length") == "10"
    assert header(resp, "transfer-encoding") is None
    assert body == b"0123456789"


def test_content_length_not_reached_aborts_the_connection(server):
    proc, state = server
    with connect(proc.port) as sock:
        reader = H11Reader(sock)
        reader.send("GET", "/length-short")
        with pytest.raises(h11.RemoteProtocolError):
            reader.response()  # EOF before 10 bytes: the client never takes it for a whole body
    assert wait_for(lambda: "declared Content-Length" in read_state(state, "length-short"))


def test_write_beyond_content_length_is_refused(server):
    proc, state = server
    with connect(proc.port) as sock:
        reader = H11Reader(sock)
        reader.send("GET", "/length-over")
        resp, body = reader.response()
    assert body == b"abc"
    assert read_state(state, "length-over") == "refused"


def test_http10_client_gets_a_close_delimited_body(server):
    proc, _ = server
    with connect(proc.port) as sock:
        sock.sendall(request_bytes("/count?n=3", version="1.0"))
        raw = read_until_close(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201 ")
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert b"Connection: close" in head
    assert body == b"line 0\nline 1\nline 2\n"


def test_head_gets_headers_only_and_the_connection_stays_usable(server):
    proc, _ = server
    with connect(proc.port) as sock:
        reader = H11Reader(sock)
        reader.send("HEAD", "/count?n=3")
        resp, body = reader.response()
        assert resp.status_code == 201 and body == b""
        reader.next_cycle()
        reader.send("GET", "/dyn")
        resp, body = reader.response()
    assert body == b"dynamic"


def test_keep_alive_after_a_stream_and_pipelined_requests_wait_for_it(server):
    proc, _ = server
    with connect(proc.port) as sock:
        paths = ["/count?n=200", "/", "/dyn"]
        sock.sendall(b"".join(request_bytes(p) for p in paths))
        reader = H11Reader(sock)
        bodies = []
        for path in paths:
            reader.send("GET", path, wire=False)
            resp, body = reader.response()
            bodies.append(body)
            reader.next_cycle()
    assert bodies[0] == b"".join(b"line %d\n" % i for i in range(200))
    assert bodies[1:] == [b"static", b"dynamic"]


def test_handler_raising_before_headers_gives_500(server):
    proc, _ = server
    resp = httpx.get(f"{proc.url}/raise-before", timeout=10)
    assert resp.status_code == 500
    assert "before headers" not in resp.text
    assert "RuntimeError: before headers" in proc.output() or wait_for(
        lambda: "RuntimeError: before headers" in proc.output())


def test_handler_raising_after_headers_truncates_the_body(server):
    proc, _ = server
    with connect(proc.port) as sock:
        reader = H11Reader(sock)
        reader.send("GET", "/raise-after")
        got = b""
        with pytest.raises(h11.RemoteProtocolError):
            for event in reader.events():
                if isinstance(event, h11.Data):
                    got += event.data
    assert got == b"partial"


def test_abort_closes_at_once_and_later_writes_raise_stream_closed(server):
    proc, state = server
    with connect(proc.port) as sock:
        reader = H11Reader(sock)
        reader.send("GET", "/abort")
        with pytest.raises(h11.RemoteProtocolError):
            list(reader.events())
    assert wait_for(lambda: read_state(state, "abort") == "closed=True")


def test_other_requests_are_served_while_a_stream_is_open(server):
    proc, state = server
    with connect(proc.port) as stream_sock:
        stream_sock.sendall(request_bytes("/slow?tag=busy"))
        seen = b""
        while b"ready" not in seen:  # head and first chunk may come in separate reads
            data = stream_sock.recv(65536)
            assert data, f"connection closed before the first chunk: {seen!r}"
            seen += data
        for _ in range(3):
            assert httpx.get(f"{proc.url}/dyn", timeout=10).text == "dynamic"
            assert httpx.get(f"{proc.url}/", timeout=10).text == "static"
    assert wait_for(lambda: read_state(state, "slow-busy") == "closed")


def test_idle_stream_learns_the_client_disconnected(server):
    proc, state = server
    sock = connect(proc.port)
    sock.sendall(request_bytes("/slow?tag=idle"))
    data = b""
    while b"ready" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before the first chunk: {data!r}"
        data += chunk
    sock.close()
    assert wait_for(lambda: read_state(state, "slow-idle") == "closed")


def test_client_that_does_not_read_blocks_the_writer_with_bounded_memory(server):
    proc, state = server
    total_mb = 64
    sock = connect(proc.port, rcvbuf=64 * 1024)
    rss_before = rss_kib(proc.pid)
    sock.sendall(request_bytes(f"/big?tag=noread&mb={total_mb}"))

    def progress() -> int:
        text = read_state(state, "big-noread")
        return int(text) if text else 0

    # The handler makes progress, then stops: its write() blocks (the loop keeps serving).
    assert wait_for(lambda: progress() > 0)
    last, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = progress()
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= 1.5:
            break
        time.sleep(0.1)
    accepted = progress()
    assert accepted < total_mb * 1024 * 1024 // 4, accepted  # socket buffers + high water, not the total
    assert read_state(state, "big-noread-end") == ""  # still blocked, not finished
    assert httpx.get(f"{proc.url}/dyn", timeout=10).text == "dynamic"
    grown_kib = rss_kib(proc.pid) - rss_before
    assert grown_kib < total_mb * 1024 // 2, grown_kib
    sock.close()  # the blocked write() learns the client is gone
    assert wait_for(lambda: read_state(state, "big-noread-end").startswith("closed after"))


def test_slow_reader_gets_every_byte_in_order(server):
    proc, state = server
    mb = 8
    piece = bytes(range(256)) * 256
    with connect(proc.port, rcvbuf=64 * 1024) as sock:
        reader = H11Reader(sock)
        reader.send("GET", f"/big?tag=slow&mb={mb}")
        got = 0
        for event in reader.events():
            if isinstance(event, h11.Data):
                data = event.data
                assert data == (piece * 2)[got % len(piece): got % len(piece) + len(data)]
                got += len(data)
    assert got == mb * 1024 * 1024
    assert wait_for(lambda: read_state(state, "big-slow-end") == f"done {got}")


def test_drain_ends_open_streams_and_the_worker_exits(tmp_path_factory, request):
    for which in SERVERS:
        proc, _ = serve(APP, tmp_path_factory, which, "drain")
        try:
            sock = connect(proc.port)
            sock.sendall(request_bytes("/forever"))
            seen = b""
            while b"tick" not in seen:  # the head and the first chunk may arrive in separate reads
                data = sock.recv(65536)
                assert data, f"connection closed before the first event: {seen!r}"
                seen += data
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0  # drain_timeout=1: the stream does not hold it
            raw = b""
            try:
                raw = read_until_close(sock)
            except OSError:
                pass
            assert not raw.endswith(b"0\r\n\r\n")  # cut, never a "complete" body
            sock.close()
        finally:
            proc.stop()


def test_streaming_kwarg_is_validated():
    from hypersonic import Hypersonic

    app = Hypersonic()
    with pytest.raises(TypeError, match="streaming"):
        app.get("/a", lambda req, stream: None, streaming="yes")
    with pytest.raises(TypeError, match=r"\(req, stream\)"):
        app.get("/b", lambda req: None, streaming=True)
    app.get("/c", lambda req, stream: None, streaming=True)
    assert app.route_counts() == (0, 1)


SHORT_TIMEOUTS_APP = APP.replace("app = Hypersonic(drain_timeout=1)",
                                 "app = Hypersonic(drain_timeout=1, keepalive_timeout=1, recv_timeout=1)") + r'''
@app.get("/pause", streaming=True)
def pause(req, stream):
    stream.write("a")
    time.sleep(2.5)
    stream.write("b")
'''


@pytest.mark.parametrize("which", SERVERS)
def test_streams_are_not_idle_closed_but_a_stalled_reader_is(tmp_path_factory, which):
    proc, state = serve(SHORT_TIMEOUTS_APP, tmp_path_factory, which, "short")
    try:
        # Quiet for longer than keepalive_timeout: still open (a stream is not an idle connection).
        with connect(proc.port) as sock:
            reader = H11Reader(sock)
            reader.send("GET", "/pause")
            resp, body = reader.response()
        assert body == b"ab"
        # A reader that takes nothing: closed after the stall timeout; the blocked write() raises.
        sock = connect(proc.port, rcvbuf=64 * 1024)
        sock.sendall(request_bytes("/big?tag=stall&mb=64"))
        assert wait_for(lambda: read_state(state, "big-stall-end").startswith("closed after"))
        sock.close()
    finally:
        proc.stop()
