"""A browser-like EventSource client for the tests, written to the WHATWG HTML
standard's rules ("Server-sent events", 9.2.5 "Parsing an event stream" and
9.2.6 "Interpreting an event stream"), over a raw socket with h11 framing.

What it does as a browser would: sends ``Accept: text/event-stream`` and
``Cache-Control: no-cache`` (and ``Last-Event-ID`` once it has an id); fails
the connection unless the response is 200 with a ``text/event-stream`` type;
decodes UTF-8 (a leading BOM dropped); splits lines on CRLF, LF or CR (a CR at
the end of one read and an LF at the start of the next are one line end);
handles blank lines (dispatch), comments (a leading colon), and the fields
``event``, ``data``, ``id`` (ignored when it contains NUL) and ``retry``
(only ASCII digits); one optional space after the colon is dropped; other
fields are ignored. On dispatch: the last event id is set; an empty data
buffer dispatches nothing; a trailing LF is removed from the data; the type
defaults to "message". ``reconnect()`` opens a new connection carrying the
last event id, as the browser does after the reconnection time.
"""

from __future__ import annotations

import codecs
import re
import socket
from dataclasses import dataclass
from typing import List, Optional

import h11

HOST = "127.0.0.1"
READ_TIMEOUT = 10.0
_DIGITS = re.compile(r"^[0-9]+$")


@dataclass
class MessageEvent:
    type: str
    data: str
    last_event_id: str


class EventStreamParser:
    """The WHATWG parser and interpreter (state that lives across connections:
    last_event_id and reconnection_time)."""

    def __init__(self) -> None:
        self.last_event_id = ""
        self.reconnection_time: Optional[int] = None
        self.events: List[MessageEvent] = []
        self.comments: List[str] = []
        self._reset_connection()

    def _reset_connection(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._first = True
        self._pending = ""  # text not yet ending in a line end
        self._after_cr = False
        self._data = ""
        self._event_type = ""

    def new_connection(self) -> None:
        """Buffers are per connection; the last event id survives."""
        self._reset_connection()

    def feed(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if self._first and text:
            self._first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        for ch in text:
            if self._after_cr:
                self._after_cr = False
                if ch == "\n":
                    continue  # CRLF: the CR ended the line already
            if ch == "\r":
                self._after_cr = True
                self._line(self._pending)
                self._pending = ""
            elif ch == "\n":
                self._line(self._pending)
                self._pending = ""
            else:
                self._pending += ch

    def _line(self, line: str) -> None:
        if line == "":
            self._dispatch()
            return
        if line.startswith(":"):
            self.comments.append(line[2:] if line.startswith(": ") else line[1:])  # ignored; kept for tests
            return
        if ":" in line:
            name, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            name, value = line, ""
        if name == "event":
            self._event_type = value
        elif name == "data":
            self._data += value + "\n"
        elif name == "id":
            if "\x00" not in value:
                self.last_event_id = value
        elif name == "retry":
            if _DIGITS.match(value):
                self.reconnection_time = int(value)
        # any other field is ignored

    def _dispatch(self) -> None:
        if self._data == "":
            self._event_type = ""
            return
        data = self._data[:-1] if self._data.endswith("\n") else self._data
        self.events.append(MessageEvent(self._event_type or "message", data, self.last_event_id))
        self._data = ""
        self._event_type = ""


class EventSource:
    """One EventSource on HOST:port + path."""

    def __init__(self, port: int, path: str) -> None:
        self.port = port
        self.path = path
        self.parser = EventStreamParser()
        self.sock: Optional[socket.socket] = None
        self.response: Optional[h11.Response] = None
        self.ended = False  # the server finished the response (the browser would reconnect)
        self.request_headers: List[tuple] = []

    @property
    def events(self) -> List[MessageEvent]:
        return self.parser.events

    def connect(self) -> "EventSource":
        self.close()
        self.parser.new_connection()
        self.ended = False
        headers = [("Host", "test"), ("Accept", "text/event-stream"), ("Cache-Control", "no-cache")]
        if self.parser.last_event_id:
            headers.append(("Last-Event-ID", self.parser.last_event_id))
        self.request_headers = headers
        self.sock = socket.create_connection((HOST, self.port), timeout=READ_TIMEOUT)
        self._h11 = h11.Connection(h11.CLIENT)
        self.sock.sendall(self._h11.send(h11.Request(method="GET", target=self.path, headers=headers)))
        self.sock.sendall(self._h11.send(h11.EndOfMessage()))
        while self.response is None or self._h11.their_state is h11.SEND_RESPONSE:
            event = self._next()
            if isinstance(event, h11.Response):
                self.response = event
                break
        content_type = dict(self.response.headers).get(b"content-type", b"").split(b";")[0].strip()
        if self.response.status_code != 200 or content_type != b"text/event-stream":
            self.close()
            raise ConnectionError(f"EventSource failed: {self.response.status_code} {content_type!r}")
        return self

    def reconnect(self) -> "EventSource":
        """What the browser does once the reconnection time passed."""
        self.response = None
        return self.connect()

    def _next(self) -> object:
        assert self.sock is not None
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                self._h11.receive_data(self.sock.recv(65536))
                continue
            return event

    def read_until(self, count: int) -> List[MessageEvent]:
        """Read until at least ``count`` events in total were dispatched, or the response ends."""
        while len(self.events) < count and not self.ended:
            event = self._next()
            if isinstance(event, h11.Data):
                self.parser.feed(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self.ended = True
        return self.events

    def read_to_end(self) -> List[MessageEvent]:
        """Read until the server ends the response."""
        return self.read_until(1 << 30)

    def read_comments(self, count: int) -> List[str]:
        while len(self.parser.comments) < count and not self.ended:
            event = self._next()
            if isinstance(event, h11.Data):
                self.parser.feed(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self.ended = True
        return self.parser.comments

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
