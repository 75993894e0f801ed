"""Server-Sent Events over a streaming route (WHATWG HTML, "Server-sent events").

>>> from hypersonic import Hypersonic, SSE
>>> app = Hypersonic()
>>> @app.get("/events", streaming=True)
... def events(req, stream):
...     sse = SSE(stream, keepalive=15)
...     start = int(sse.last_event_id or 0)
...     for n in range(start + 1, start + 4):
...         sse.event(f"tick {n}", event="tick", id=str(n))

Each event is sent as one write: ``event:``, ``id:``, ``retry:`` fields, one
``data:`` line per line of the data (split on CRLF, CR and LF, the line
endings the WHATWG parser accepts), and a blank line. A connection idle for
``keepalive`` seconds gets a comment line, so proxies and clients do not time
it out; one shared timer thread serves every SSE stream of the process and
forgets a stream when it closes.
"""

from __future__ import annotations

import heapq
import itertools
import re
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from .stream import Stream, StreamClosed

__all__ = ["SSE", "SSE_HEADERS", "KEEPALIVE_COMMENT"]

#: Fields sent with every event stream (text/event-stream is always UTF-8).
SSE_HEADERS: Tuple[Tuple[str, str], ...] = (
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),  # nginx: do not buffer the stream
)
#: The comment text sent after `keepalive` idle seconds.
KEEPALIVE_COMMENT = "keep-alive"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FORBIDDEN_IN_FIELD = re.compile(r"[\r\n\x00]")


def _field_value(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if _FORBIDDEN_IN_FIELD.search(value):
        raise ValueError(f"{name} must not contain CR, LF or NUL (the client would split or ignore it)")
    return value


class SSE:
    """An event stream on ``stream`` (a :class:`~hypersonic.stream.Stream`).

    Construction sends the headers (``text/event-stream``, ``Cache-Control:
    no-cache``, ``X-Accel-Buffering: no``). ``keepalive``: seconds of silence
    after which a comment is sent (None or 0: never). ``last_event_id`` is the
    request's ``Last-Event-ID`` header (a reconnecting EventSource sends the
    last id it saw), or None. Writes raise
    :class:`~hypersonic.stream.StreamClosed` once the client is gone.
    """

    def __init__(self, stream: Stream, keepalive: Optional[float] = 15) -> None:
        if not isinstance(stream, Stream):
            raise TypeError(f"stream must be a hypersonic Stream, not {type(stream).__name__}")
        if keepalive is not None and (isinstance(keepalive, bool) or not isinstance(keepalive, (int, float))):
            raise TypeError(f"keepalive must be a number of seconds or None, not {type(keepalive).__name__}")
        if keepalive is not None and keepalive < 0:
            raise ValueError(f"keepalive must be >= 0, got {keepalive!r}")
        self.stream = stream
        self.keepalive = float(keepalive) if keepalive else None
        header = stream.request.header("last-event-id") if stream.request is not None else None
        self.last_event_id: Optional[str] = header
        self._last_write = time.monotonic()
        stream.headers(200, SSE_HEADERS)
        if self.keepalive:
            _timer.add(self)
            stream.add_close_callback(lambda: _timer.remove(self))

    @property
    def closed(self) -> bool:
        """True once the client is gone (or the stream ended)."""
        return self.stream.closed or self.stream.finished

    def event(self, data: Any, event: Optional[str] = None, id: Optional[str] = None,  # noqa: A002 - the field
              retry: Optional[int] = None) -> None:
        """Send one event. data: str (other values are str()-ed); its lines
        become ``data:`` lines. event: the event type (the client's listener
        name; default "message"). id: sets the client's last event id (sent
        back as Last-Event-ID on reconnect); "" resets it. retry: the client's
        reconnection delay in milliseconds. ValueError for CR/LF/NUL in event
        or id, or a negative retry."""
        text = data if isinstance(data, str) else str(data)
        lines: List[str] = []
        if event is not None:
            lines.append(f"event: {_field_value('event', event)}\n")
        if id is not None:
            lines.append(f"id: {_field_value('id', id)}\n")
        if retry is not None:
            lines.append(self._retry_line(retry))
        lines.extend(f"data: {line}\n" for line in _LINE_BREAK.split(text))
        lines.append("\n")
        self._send("".join(lines))

    def comment(self, text: str = "") -> None:
        """Send a comment (ignored by clients; keeps intermediaries from timing out)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        self._send("".join(f": {line}\n" for line in _LINE_BREAK.split(text)) + "\n")

    def retry(self, milliseconds: int) -> None:
        """Set the client's reconnection delay without sending an event."""
        self._send(self._retry_line(milliseconds) + "\n")

    def close(self) -> None:
        """End the stream (the client's EventSource will reconnect unless told otherwise)."""
        self.stream.end()

    @staticmethod
    def _retry_line(milliseconds: Any) -> str:
        if isinstance(milliseconds, bool) or not isinstance(milliseconds, int):
            raise TypeError(f"retry must be an int of milliseconds, not {type(milliseconds).__name__}")
        if milliseconds < 0:
            raise ValueError(f"retry must be >= 0, got {milliseconds}")
        return f"retry: {milliseconds}\n"

    def _send(self, text: str) -> None:
        self.stream.write(text)
        self._last_write = time.monotonic()

    def _keepalive_due(self, now: float) -> Optional[float]:
        """The timer's call: send the comment when idle long enough. Next due time, or None to forget."""
        if self.closed or not self.keepalive:
            return None
        due = self._last_write + self.keepalive
        if now < due:
            return due
        try:
            if self.stream._write_nowait(f": {KEEPALIVE_COMMENT}\n\n".encode("ascii")):
                self._last_write = now
        except (StreamClosed, RuntimeError):
            return None
        return now + self.keepalive


class _KeepAliveTimer:
    """One daemon thread sending every SSE stream's keep-alive comments."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: List[Tuple[float, int, SSE]] = []
        self._live: Dict[int, SSE] = {}
        self._order = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def add(self, sse: SSE) -> None:
        assert sse.keepalive
        with self._cond:
            self._live[id(sse)] = sse
            heapq.heappush(self._heap, (time.monotonic() + sse.keepalive, next(self._order), sse))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="hypersonic-sse-keepalive")
                self._thread.start()
            self._cond.notify()

    def remove(self, sse: SSE) -> None:
        with self._cond:
            self._live.pop(id(sse), None)  # its heap entry is skipped when it comes up

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and id(self._heap[0][2]) not in self._live:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    delay = self._heap[0][0] - time.monotonic()
                    if delay <= 0:
                        _, _, sse = heapq.heappop(self._heap)
                        break
                    self._cond.wait(delay)
            due = sse._keepalive_due(time.monotonic())
            with self._cond:
                if due is None:
                    self._live.pop(id(sse), None)
                elif id(sse) in self._live:
                    heapq.heappush(self._heap, (due, next(self._order), sse))


_timer = _KeepAliveTimer()
