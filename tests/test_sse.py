"""Server-Sent Events (hypersonic.SSE) against a browser-like EventSource
(tests/_eventsource.py, written to the WHATWG parsing rules), on both servers.

Pinned: the headers, event/data/id/retry fields, multi-line data (CRLF, CR and
LF), comments, keep-alive comments while idle (and only then), reconnect with
Last-Event-ID, Unicode, and the argument checks (CR/LF in id/event)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from _eventsource import EventSource, EventStreamParser
from _server_util import ServerProcess
from _stream_util import SERVERS, read_state, serve, wait_for

APP = r'''
import os, time
from pathlib import Path
from hypersonic import Hypersonic, SSE, StreamClosed

STATE = Path(os.environ["HS_STATE_DIR"])
app = Hypersonic()

@app.get("/feed", streaming=True)
def feed(req, stream):
    sse = SSE(stream, keepalive=None)
    start = int(sse.last_event_id or 0)
    for n in range(start + 1, start + 4):
        sse.event(f"item {n}", event="item", id=str(n))
    sse.close()

@app.get("/shapes", streaming=True)
def shapes(req, stream):
    sse = SSE(stream, keepalive=None)
    sse.comment("hello, comment")
    sse.event("one\ntwo\r\nthree\rfour", id="m1")
    sse.event("", event="empty-data")
    sse.event("caf\u00e9 \u2603")
    sse.event({"json": "ish"}, retry=1500)
    sse.event("after reset", id="")
    sse.retry(250)
    sse.event("last")

@app.get("/quiet", streaming=True)
def quiet(req, stream):
    sse = SSE(stream, keepalive=0.3)
    sse.event("first")
    time.sleep(1.2)
    sse.event("second")

@app.get("/busy", streaming=True)
def busy(req, stream):
    sse = SSE(stream, keepalive=0.5)
    for i in range(20):
        sse.event(str(i))
        time.sleep(0.1)

@app.get("/until-gone", streaming=True)
def until_gone(req, stream):
    sse = SSE(stream, keepalive=0.2)
    sse.event("hi")
    stream.wait_closed(30)
    (STATE / "until-gone").write_text("closed")
'''


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[ServerProcess, Path]]:
    proc, state = serve(APP, tmp_path_factory, request.param, "sse")
    try:
        yield proc, state
    finally:
        proc.stop()


def test_sse_headers(server):
    proc, _ = server
    es = EventSource(proc.port, "/feed").connect()
    try:
        headers = {n.decode(): v.decode() for n, v in es.response.headers}
    finally:
        es.close()
    assert headers["content-type"] == "text/event-stream"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert headers["transfer-encoding"] == "chunked"
    assert headers["x-content-type-options"] == "nosniff"


def test_events_ids_and_reconnect_with_last_event_id(server):
    proc, _ = server
    es = EventSource(proc.port, "/feed").connect()
    try:
        es.read_to_end()
        assert es.ended  # the server ended the response; a browser reconnects
        assert [(e.type, e.data, e.last_event_id) for e in es.events] == [
            ("item", "item 1", "1"), ("item", "item 2", "2"), ("item", "item 3", "3")]
        es.reconnect()
        assert ("Last-Event-ID", "3") in es.request_headers
        es.read_until(6)
    finally:
        es.close()
    assert [e.data for e in es.events[3:]] == ["item 4", "item 5", "item 6"]
    assert es.parser.last_event_id == "6"


def test_multiline_data_comments_retry_and_id_reset(server):
    proc, _ = server
    es = EventSource(proc.port, "/shapes").connect()
    try:
        es.read_until(6)
    finally:
        es.close()
    events = es.events
    assert es.parser.comments[0] == "hello, comment"
    assert (events[0].type, events[0].data, events[0].last_event_id) == ("message", "one\ntwo\nthree\nfour", "m1")
    assert (events[1].type, events[1].data) == ("empty-data", "")  # one empty data line is still an event
    assert events[2].data == "caf\u00e9 \u2603"
    assert events[3].data == "{'json': 'ish'}"
    assert events[4].data == "after reset" and events[4].last_event_id == ""
    assert events[5].data == "last"
    assert es.parser.reconnection_time == 250


def test_keepalive_comments_while_idle(server):
    proc, _ = server
    es = EventSource(proc.port, "/quiet").connect()
    try:
        es.read_until(2)
    finally:
        es.close()
    assert [e.data for e in es.events] == ["first", "second"]
    assert "keep-alive" in es.parser.comments


def test_no_keepalive_while_events_flow(server):
    proc, _ = server
    es = EventSource(proc.port, "/busy").connect()
    try:
        es.read_until(20)
    finally:
        es.close()
    assert [e.data for e in es.events] == [str(i) for i in range(20)]
    assert "keep-alive" not in es.parser.comments


def test_sse_handler_learns_the_client_left(server):
    proc, state = server
    es = EventSource(proc.port, "/until-gone").connect()
    es.read_until(1)
    es.close()
    assert wait_for(lambda: read_state(state, "until-gone") == "closed")


# -- argument checks and the WHATWG reader itself (no server) ----------------------------

class _Transport:
    """A stand-in for the server module: records what a Stream sends."""

    def __init__(self) -> None:
        self.sent: List[bytes] = []

    def stream_send(self, fd: int, serial: int, data: bytes, end: int) -> int:
        self.sent.append(bytes(data))
        return 0

    def stream_abort(self, fd: int, serial: int) -> None:
        pass


class _Request:
    def __init__(self, last_id=None) -> None:
        self._last = last_id

    def header(self, name, default=None):
        return self._last if name.lower() == "last-event-id" else default


def _sse(last_id=None):
    from hypersonic import SSE
    from hypersonic.stream import Stream

    transport = _Transport()
    stream = Stream(transport, 5, 1, _Request(last_id), minor_version=1, keep_alive=True, head_only=False,
                    security_headers=())
    return SSE(stream, keepalive=None), transport


@pytest.mark.parametrize("field", ["id", "event"])
@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b"])
def test_newlines_in_id_or_event_raise_value_error(field, bad):
    sse, _ = _sse()
    with pytest.raises(ValueError, match=field):
        sse.event("x", **{field: bad})


def test_bad_arguments_raise_type_or_value_error():
    from hypersonic import SSE

    sse, _ = _sse()
    with pytest.raises(ValueError, match="retry"):
        sse.event("x", retry=-1)
    with pytest.raises(TypeError, match="retry"):
        sse.event("x", retry="10")
    with pytest.raises(TypeError, match="stream"):
        SSE(object())
    with pytest.raises(ValueError, match="keepalive"):
        _sse_stream = _sse()[0].stream
        SSE(_sse_stream, keepalive=-1)


def test_last_event_id_comes_from_the_request():
    sse, transport = _sse("41")
    assert sse.last_event_id == "41"
    sse.event("x", id="42")
    head = transport.sent[0].decode("latin-1")
    assert "Content-Type: text/event-stream\r\n" in head and "Cache-Control: no-cache\r\n" in head
    event = b"id: 42\ndata: x\n\n"
    assert transport.sent[-1] == b"%x\r\n%b\r\n" % (len(event), event)  # one event, one chunk


def test_reader_follows_whatwg_line_endings_split_across_reads():
    parser = EventStreamParser()
    for piece in [b"\xef\xbb\xbfdata: a\r", b"\ndata:b\r\rdata", b": c\n", b"id: 7\x00\n", b"retry: x1\n\n"]:
        parser.feed(piece)
    assert [(e.data, e.last_event_id) for e in parser.events] == [("a\nb", ""), ("c", "")]
    assert parser.reconnection_time is None
