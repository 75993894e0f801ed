"""hypersonic.socket http_recv / http_send behaviour, against every backend:
buffering, pipelining, bodies, keep-alive rules, rejection statuses, whole responses."""

from __future__ import annotations

import os
import re
import socket
import threading

import pytest

from conftest import IO_WAIT_S, wait_readable


def parse_response(data: bytes):
    """(status, headers dict with lower-case names, body) of one response at the start of data."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    return status, headers, rest[:length]


def read_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def read_one_response(sock: socket.socket) -> bytes:
    """Read one response (head + Content-Length body) from sock."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        assert chunk, "connection closed before a full head"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    return head + b"\r\n\r\n" + rest + read_exactly(sock, length - len(rest))


# ---- requests --------------------------------------------------------------------


def test_simple_get_returns_the_five_fields(pair):
    pair.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    req = pair.recv_request()
    assert req == ["GET", "/hello", b"", 1, pair.fd]
    assert [type(v) for v in req] == [str, str, bytes, int, int]
    assert pair.api.http_recv(pair.fd) is None
    assert pair.api.http_recv_status(pair.fd) == pair.api.RECV_PENDING


def test_path_keeps_the_query_string(pair):
    pair.send(b"GET /search?q=a%20b&x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert pair.recv_request()[1] == "/search?q=a%20b&x=1"


@pytest.mark.parametrize(
    "target, path",
    [("http://example.com/a/b?c=d", "/a/b?c=d"), ("http://example.com", "/"), ("https://h:8080?x=1", "/?x=1")],
)
def test_absolute_form_target_is_reduced_to_origin_form(pair, target, path):
    pair.send(f"GET {target} HTTP/1.1\r\nHost: example.com\r\n\r\n".encode())
    assert pair.recv_request()[1] == path


def test_request_split_across_sends_is_none_until_complete(pair):
    api = pair.api
    parts = [b"GET /sp", b"lit HTTP/1.1\r\nHo", b"st: x\r\n", b"\r\n"]
    for part in parts[:-1]:
        pair.send(part)
        assert api.http_recv(pair.fd) is None
        assert api.http_recv_status(pair.fd) == api.RECV_PENDING
    pair.send(parts[-1])
    assert api.http_recv(pair.fd) == ["GET", "/split", b"", 1, pair.fd]


def test_two_pipelined_requests_in_one_send_come_out_from_two_calls(pair):
    api = pair.api
    pair.send(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
    assert api.http_recv(pair.fd)[1] == "/one"
    # the second comes out of the buffer: no new readable event needed
    assert api.http_recv(pair.fd)[1] == "/two"
    assert api.http_recv(pair.fd) is None
    assert api.http_recv_status(pair.fd) == api.RECV_PENDING


def test_many_pipelined_requests_are_returned_in_order(pair):
    api = pair.api
    pair.send(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(100)))
    paths = []
    for _ in range(200):  # bounded
        req = api.http_recv(pair.fd)
        if req is None:
            if api.http_recv_status(pair.fd) != api.RECV_PENDING or len(paths) == 100:
                break
            assert wait_readable(pair.fd)
            continue
        paths.append(req[1])
    assert paths == ["/%d" % i for i in range(100)]


def test_content_length_body_is_read_completely(pair):
    body = bytes(range(256)) * 40
    pair.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    assert pair.api.http_recv(pair.fd) is None
    pair.client.sendall(body[:5000])
    assert wait_readable(pair.fd)
    assert pair.api.http_recv(pair.fd) is None
    pair.client.sendall(body[5000:])
    req = pair.recv_request()
    assert req[0] == "POST" and req[2] == body


def test_large_content_length_body_arrives_whole(pair):
    body = b"z" * (pair.api.MAX_REQUEST_BODY - 10)
    sender = threading.Thread(
        target=pair.client.sendall,
        args=(b"PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body,),
    )
    sender.start()
    try:
        req = pair.recv_request(attempts=2000)
    finally:
        sender.join(IO_WAIT_S * 4)
    assert req is not None and req[2] == body


def test_body_followed_by_pipelined_request(pair):
    pair.send(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert pair.api.http_recv(pair.fd)[:3] == ["POST", "/a", b"abc"]
    assert pair.api.http_recv(pair.fd)[:2] == ["GET", "/b"]


def test_chunked_body_is_decoded(pair):
    pair.send(
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert pair.recv_request()[:3] == ["POST", "/c", b"hello world"]
    assert pair.api.http_recv(pair.fd)[1] == "/after"


def test_chunked_body_split_at_every_byte(pair):
    api = pair.api
    pair.send(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    raw = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"
    result = None
    for i in range(len(raw)):
        assert api.http_recv(pair.fd) is None
        assert api.http_recv_status(pair.fd) == api.RECV_PENDING
        pair.send(raw[i : i + 1])
    result = pair.recv_request()
    assert result[2] == b"abc0123456789abcdef"


@pytest.mark.parametrize(
    "request_head, keep_alive",
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 0),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: CLOSE\r\n\r\n", 0),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, Close\r\n\r\n", 0),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", 0),
        (b"GET / HTTP/1.0\r\n\r\n", 0),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 1),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 0),
    ],
)
def test_keep_alive_follows_http_1_1_rules(pair, request_head, keep_alive):
    pair.send(request_head)
    assert pair.recv_request()[3] == keep_alive


def test_response_connection_header_follows_the_request(pair):
    pair.send(b"GET / HTTP/1.0\r\n\r\n")
    pair.recv_request()
    pair.api.http_send(pair.fd, "bye")
    status, headers, body = parse_response(read_one_response(pair.client))
    assert (status, headers["connection"], body) == (200, "close", b"bye")


# ---- statuses: pending / closed / rejected -----------------------------------------


def test_status_pending_while_a_request_is_incomplete(pair):
    pair.send(b"GET / HTTP/1.1\r\nHost:")
    assert pair.api.http_recv(pair.fd) is None
    assert pair.api.http_recv_status(pair.fd) == pair.api.RECV_PENDING


def test_status_pending_when_nothing_arrived(pair):
    assert pair.api.http_recv(pair.fd) is None
    assert pair.api.http_recv_status(pair.fd) == pair.api.RECV_PENDING


def test_status_closed_when_the_peer_closes(pair):
    pair.client.sendall(b"GET / HTTP/1.1\r\nHo")
    pair.client.close()
    assert wait_readable(pair.fd)
    assert pair.recv_request() is None
    assert pair.api.http_recv_status(pair.fd) == pair.api.RECV_CLOSED


def test_buffered_requests_come_out_before_the_close_is_reported(pair):
    pair.client.sendall(b"GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
    pair.client.shutdown(socket.SHUT_WR)
    assert wait_readable(pair.fd)
    assert pair.recv_request()[1] == "/last"
    assert pair.recv_request() is None
    assert pair.api.http_recv_status(pair.fd) == pair.api.RECV_CLOSED


@pytest.mark.parametrize(
    "data, status",
    [
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"Host: x\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\nHost: x\n\n", 400),  # bare LF
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
        (b"\x00\x01\x02\x03\r\n\r\n", 400),
    ],
)
def test_rejected_request_reports_its_status(pair, data, status):
    pair.client.sendall(data)
    assert wait_readable(pair.fd)
    assert pair.recv_request(attempts=200) is None
    assert pair.api.http_recv_status(pair.fd) == status
    assert pair.api.http_recv(pair.fd) is None  # stays rejected
    assert pair.api.http_recv_status(pair.fd) == status


def test_chunked_body_over_the_limit_is_413(pair):
    pair.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    pair.send(b"%x\r\n" % (pair.api.MAX_REQUEST_BODY + 1))
    assert pair.recv_request() is None
    assert pair.api.http_recv_status(pair.fd) == 413


def test_malformed_chunk_is_400(pair):
    pair.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert pair.recv_request() is None
    assert pair.api.http_recv_status(pair.fd) == 400


def test_send_error_answers_a_rejected_request_and_says_close(pair):
    pair.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n")
    assert pair.recv_request() is None
    status = pair.api.http_recv_status(pair.fd)
    assert status == 431
    n = pair.api.http_send_error(pair.fd, status)
    assert n > 0
    pair.api.close_fd(pair.fd)
    pair.fd = -1
    data = pair.read_response()
    assert len(data) == n
    status_code, headers, body = parse_response(data)
    assert status_code == 431
    assert headers["connection"] == "close"
    assert body == b"Request Header Fields Too Large"


def test_garbage_and_nul_bytes_never_crash(pair):
    api = pair.api
    junk = bytes(range(256)) * 4 + b"\r\n\r\n" + b"\x00" * 1000
    pair.send(junk)
    assert pair.recv_request() is None
    assert api.http_recv_status(pair.fd) == 400


def test_oversized_head_without_end_is_rejected_not_buffered_forever(pair):
    api = pair.api
    pair.client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (api.MAX_REQUEST_HEAD + 100))
    assert wait_readable(pair.fd)
    assert pair.recv_request(attempts=100) is None
    assert api.http_recv_status(pair.fd) == 431


def test_expect_100_continue_gets_an_interim_response(pair):
    pair.send(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    assert pair.api.http_recv(pair.fd) is None
    assert read_exactly(pair.client, 25) == b"HTTP/1.1 100 Continue\r\n\r\n"
    pair.send(b"data")
    assert pair.recv_request()[2] == b"data"


def test_no_100_continue_when_the_body_came_with_the_head(pair):
    pair.send(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\ndata")
    assert pair.recv_request()[2] == b"data"
    pair.api.http_send(pair.fd, "ok")
    assert read_one_response(pair.client).startswith(b"HTTP/1.1 200 OK\r\n")


def test_reused_fd_number_starts_clean(sock_api):
    api = sock_api
    from conftest import SocketPair

    first = SocketPair(api)
    try:
        first.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Partial: ")  # left incomplete
        assert api.http_recv(first.fd) is None
        api.close_fd(first.fd)  # the next accept usually gets the same number back
        first.client.close()
        second_client = socket.create_connection(("127.0.0.1", first.port), timeout=IO_WAIT_S)
        assert wait_readable(first.listen_fd)
        fd = api.http_accept(first.listen_fd)
        try:
            second_client.sendall(b"GET /fresh HTTP/1.1\r\nHost: x\r\n\r\n")
            assert wait_readable(fd)
            assert api.http_recv(fd)[1] == "/fresh"
        finally:
            second_client.close()
            api.close_fd(fd)
        first.fd = -1
    finally:
        first.close()


# ---- responses ---------------------------------------------------------------------


def test_http_send_writes_a_complete_response_and_returns_its_size(pair):
    pair.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    pair.recv_request()
    n = pair.api.http_send(pair.fd, "Hello", "text/plain")
    data = read_one_response(pair.client)
    assert n == len(data)
    status, headers, body = parse_response(data)
    assert (status, body) == (200, b"Hello")
    assert headers["content-type"] == "text/plain"
    assert headers["content-length"] == "5"
    assert headers["connection"] == "keep-alive"
    assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT", headers["date"])


def test_http_send_accepts_bytes_and_utf8_str_and_a_content_type(pair):
    pair.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    pair.recv_request()
    pair.api.http_send(pair.fd, b"\x00\xffbin", content_type="application/octet-stream")
    status, headers, body = parse_response(read_one_response(pair.client))
    assert body == b"\x00\xffbin" and headers["content-type"] == "application/octet-stream"
    pair.api.http_send(pair.fd, "h\u00e9llo \u2603")
    assert parse_response(read_one_response(pair.client))[2] == "h\u00e9llo \u2603".encode()


def test_http_send_404_is_a_not_found_response(pair):
    pair.send(b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n")
    pair.recv_request()
    n = pair.api.http_send_404(pair.fd)
    data = read_one_response(pair.client)
    assert n == len(data)
    status, headers, body = parse_response(data)
    assert (status, body, headers["connection"]) == (404, b"Not Found", "keep-alive")


def test_head_request_gets_headers_without_body(pair):
    pair.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert pair.recv_request()[0] == "HEAD"
    n = pair.api.http_send(pair.fd, "12345")
    pair.api.close_fd(pair.fd)
    pair.fd = -1
    data = pair.read_response()
    assert len(data) == n
    assert data.endswith(b"\r\n\r\n") and b"Content-Length: 5\r\n" in data


def test_http_send_on_a_closed_peer_is_minus_one(pair):
    pair.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    pair.recv_request()
    pair.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    pair.client.close()
    results = [pair.api.http_send(pair.fd, "x" * 100000) for _ in range(5)]  # EPIPE/ECONNRESET by now
    assert results[-1] == -1


def test_eight_mib_body_reaches_a_slow_reader_intact(pair):
    pair.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    pair.recv_request()
    body = bytes(i * 7 % 251 for i in range(256)) * (8 * 4096)
    assert len(body) == 8 * 1024 * 1024
    # Small buffers on both sides so the 8 MiB cannot fit: http_send must wait and resume.
    pair.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    server_side = socket.socket(fileno=os.dup(pair.fd))
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    server_side.close()
    received = bytearray()
    done = threading.Event()

    def slow_reader():
        pair.client.settimeout(IO_WAIT_S * 4)
        head_len = None
        done.wait(0.2)  # let the server fill the socket buffers and block first (not an assertion)
        try:
            for _ in range(10**6):  # bounded; small reads keep the server's socket full
                chunk = pair.client.recv(4096)
                if not chunk:
                    break
                received.extend(chunk)
                if head_len is None and b"\r\n\r\n" in received:
                    head_len = received.index(b"\r\n\r\n") + 4
                if head_len is not None and len(received) - head_len >= len(body):
                    break
        except OSError:
            pass

    reader = threading.Thread(target=slow_reader)
    reader.start()
    try:
        n = pair.api.http_send(pair.fd, body, "application/octet-stream")
    finally:
        done.set()
        reader.join(IO_WAIT_S * 6)
    assert not reader.is_alive()
    head_len = received.index(b"\r\n\r\n") + 4
    assert n == head_len + len(body)
    assert bytes(received[head_len:]) == body


def test_http_send_accepts_bytes_like_bodies(pair):
    import array

    pair.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    pair.recv_request()
    for body in (bytearray(b"ba"), memoryview(b"mv"), array.array("H", [0x4142])):
        n = pair.api.http_send(pair.fd, body)
        data = read_one_response(pair.client)
        assert n == len(data) and parse_response(data)[2] == bytes(memoryview(body).cast("B"))
    with pytest.raises(BufferError):
        pair.api.http_send(pair.fd, memoryview(b"abcdef")[::2])


# ---- one read per readable event -------------------------------------------------


def _loop_with(pair):
    loop = pair.api.create_event_loop(pair.listen_fd)
    assert loop > 0 and pair.api.event_add(loop, pair.fd) == 0
    return loop


def test_drain_loops_final_call_does_not_read_again_in_the_same_round(pair):
    api = pair.api
    loop = _loop_with(pair)
    try:
        pair.send(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert api.ev_poll(loop, int(IO_WAIT_S * 1000)) == [(pair.fd, api.EV_READ)]
        assert api.http_recv(pair.fd)[1] == "/1"
        pair.send(b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")  # arrives after the socket was drained
        assert api.http_recv(pair.fd) is None  # this round's read already emptied the socket
        assert api.http_recv_status(pair.fd) == api.RECV_PENDING
        # level-triggered: the next round reports the new bytes, and they are read
        assert api.ev_poll(loop, int(IO_WAIT_S * 1000)) == [(pair.fd, api.EV_READ)]
        assert api.http_recv(pair.fd)[1] == "/2"
    finally:
        api.close_fd(loop)


def test_one_http_recv_per_event_gets_every_request(pair):
    api = pair.api
    loop = _loop_with(pair)
    try:
        for i in range(5):
            pair.send(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            assert (pair.fd, api.EV_READ) in api.ev_poll(loop, int(IO_WAIT_S * 1000))
            assert api.http_recv(pair.fd)[1] == "/%d" % i
            assert api.http_send(pair.fd, "ok") > 0
            assert read_one_response(pair.client).endswith(b"ok")
    finally:
        api.close_fd(loop)


def test_skipped_read_never_hides_a_close(pair):
    api = pair.api
    loop = _loop_with(pair)
    try:
        pair.send(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
        api.ev_poll(loop, int(IO_WAIT_S * 1000))
        assert api.http_recv(pair.fd)[1] == "/1"
        pair.client.close()
        assert wait_readable(pair.fd)
        assert api.http_recv(pair.fd) is None
        status = api.http_recv_status(pair.fd)
        for _ in range(3):  # bounded: the close shows by the next round at the latest
            if status == api.RECV_CLOSED:
                break
            assert (pair.fd, api.EV_READ) in api.ev_poll(loop, int(IO_WAIT_S * 1000))
            assert api.http_recv(pair.fd) is None
            status = api.http_recv_status(pair.fd)
        assert status == api.RECV_CLOSED
    finally:
        api.close_fd(loop)
