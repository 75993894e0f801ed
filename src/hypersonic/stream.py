"""Streaming responses: a route registered with ``streaming=True`` gets ``(req, stream)``.

>>> from hypersonic import Hypersonic
>>> app = Hypersonic()
>>> @app.get("/count", streaming=True)
... def count(req, stream):
...     stream.headers(200, content_type="text/plain")
...     for i in range(3):
...         stream.write(f"{i}\\n")
...     stream.end()

Theory of operation. The server loop (C, or the pure-Python fallback) never
runs a streaming handler itself: it calls :class:`StreamStarter`, which runs
the handler in its own daemon thread, so a handler that streams for minutes
does not stop the loop serving everyone else. This module frames the bytes
(status line and fields, ``Transfer-Encoding: chunked`` chunks and the
terminating chunk, or identity framing) and hands them to the loop through a
*transport* -- the server module's ``stream_send(fd, serial, data, end)`` and
``stream_abort(fd, serial)``; the loop writes them and calls the stream's
``_notify(event)`` back when the output drained (backpressure) or the
connection closed. Both servers share this code, so they frame identically.

Framing (RFC 9112 6): an HTTP/1.1 request gets a chunked body unless the
handler gives ``Content-Length`` (then exactly that many bytes, identity
framed); an HTTP/1.0 request gets the body unframed and the connection closes
at the end. HEAD (and 204/304) gets the head only: writes are accepted and
dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from ._httpdate import http_date
from ._status import reason_phrase, status_has_no_body
from .response import TEXT_PLAIN, HeadersArg, _normalize_headers, check_status_and_type

__all__ = ["Stream", "StreamClosed", "StreamStarter", "STREAM_HIGH_WATER", "STREAM_LOW_WATER"]

log = logging.getLogger("hypersonic")

#: write() blocks while this many bytes of the connection's output are not yet sent...
STREAM_HIGH_WATER = 256 * 1024
#: ...until the loop has sent all but this many (HS_STREAM_HIGH/LOW_WATER in hs_stream.c).
STREAM_LOW_WATER = 64 * 1024
#: A blocked write() re-checks the connection at least this often (seconds), so a lost
#: wake-up costs latency, never a hang.
_WAIT_RECHECK = 0.5

# Events the loop passes to Stream._notify.
_EV_DRAINED = 1
_EV_CLOSED = 2
# The transport's end argument.
_SEND_MORE, _SEND_END, _SEND_END_CLOSE = 0, 1, 2
# Body framing.
_CHUNKED, _LENGTH, _UNTIL_CLOSE, _NO_BODY = "chunked", "length", "until-close", "no-body"
# Fields the stream owns (given by the handler: Content-Length is honoured, the rest dropped).
_STREAM_OWNED = frozenset({"transfer-encoding", "date", "connection"})


class StreamClosed(ConnectionError):
    """The stream cannot be written any more: the client disconnected, the
    connection failed or stalled, the server is shutting down, or the handler
    called :meth:`Stream.abort`."""


class Stream:
    """The response of a streaming route, written piece by piece.

    ``headers(status, headers, content_type)`` starts the response (optional:
    the first ``write`` sends 200 ``text/plain; charset=utf-8``);
    ``write(data)`` sends a piece; ``end()`` finishes it; ``abort()`` drops the
    connection with the body incomplete. ``write`` blocks while the client is
    not reading (more than :data:`STREAM_HIGH_WATER` bytes unsent) until the
    loop has sent all but :data:`STREAM_LOW_WATER`; a client that reads
    nothing at all for the server's stall timeout (the larger of
    ``keepalive_timeout`` and ``recv_timeout``) is disconnected, and the
    blocked ``write`` raises :class:`StreamClosed`.

    ``request`` is the :class:`~hypersonic.request.Request`; ``closed`` turns
    True when the client goes away (the loop notices EOF or an error even while
    the handler is not writing) or the server stops; ``wait_closed(timeout)``
    waits for that. Methods may be called from any thread.
    """

    def __init__(self, transport: Any, fd: int, serial: int, request: Any, *, minor_version: int,
                 keep_alive: bool, head_only: bool, security_headers: Sequence[Tuple[str, str]]) -> None:
        self.request = request
        self._transport = transport
        self._fd = fd
        self._serial = serial
        self._minor = minor_version
        self._keep = keep_alive
        self._head_only = head_only
        self._security = list(security_headers)
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._closed = False
        self._finished = False
        self._drained = False
        self._waiting = False  # a write() waits for the client (backpressure)
        self._framing: Optional[str] = None  # None until headers() ran
        self._remaining = 0  # _LENGTH: bytes still owed
        self._close_at_end = False
        self._on_close: List[Callable[[], None]] = []

    # -- state --------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once nothing more can be sent (client gone, abort(), server stopping)."""
        return self._closed

    @property
    def finished(self) -> bool:
        """True once end() (or abort()) was called."""
        return self._finished

    @property
    def headers_sent(self) -> bool:
        """True once the status line and fields are queued."""
        return self._framing is not None

    def wait_closed(self, timeout: Optional[float] = None) -> bool:
        """Block until the stream is closed or ``timeout`` seconds pass; return :attr:`closed`."""
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
            raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
        with self._cond:
            self._cond.wait_for(lambda: self._closed, timeout)
            return self._closed

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once when the stream closes (at once if it is closed).

        It runs on the server loop's thread: keep it short and non-blocking.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        with self._cond:
            if not self._closed:
                self._on_close.append(callback)
                return
        callback()

    # -- writing ------------------------------------------------------------------
    def headers(self, status: int = 200, headers: HeadersArg = None, content_type: Optional[str] = None) -> None:
        """Send the status line and fields; call at most once, before any write.

        status: 200-599. headers: a mapping or (name, value) pairs; the app's
        security headers are added unless named here; ``Content-Length`` makes
        the body identity-framed with exactly that many bytes;
        ``Transfer-Encoding``, ``Date`` and ``Connection`` belong to the server.
        content_type [text/plain; charset=utf-8]: unless headers name one.
        Raises RuntimeError when the headers were already sent, StreamClosed
        when the client is gone, TypeError/ValueError for bad arguments.
        """
        check_status_and_type(status, content_type)
        pairs = _normalize_headers(headers)
        with self._write_lock:
            if self._framing is not None:
                raise RuntimeError("headers() was already called (or a write() sent the default headers)")
            self._send_head(status, pairs, content_type)

    def _send_head(self, status: int, pairs: List[Tuple[str, str]], content_type: Optional[str]) -> None:
        length: Optional[int] = None
        user: List[Tuple[str, str]] = []
        for name, value in pairs:
            lower = name.lower()
            if lower == "content-length":
                if not value.isdigit():
                    raise ValueError(f"headers: Content-Length must be a non-negative integer, got {value!r}")
                length = int(value)
            elif lower not in _STREAM_OWNED:
                user.append((name, value))
        names = {n.lower() for n, _ in user}
        lines = [f"HTTP/1.1 {status} {reason_phrase(status)}\r\nDate: {http_date(time.time())}\r\n"]
        if "content-type" not in names:
            lines.append(f"Content-Type: {content_type or TEXT_PLAIN}\r\n")
        lines.extend(f"{n}: {v}\r\n" for n, v in self._security if n.lower() not in names)
        lines.extend(f"{n}: {v}\r\n" for n, v in user)
        if status_has_no_body(status):
            framing = _NO_BODY
        elif length is not None:
            framing = _LENGTH
            lines.append(f"Content-Length: {length}\r\n")
        elif self._minor >= 1:
            framing = _CHUNKED
            lines.append("Transfer-Encoding: chunked\r\n")
        else:
            framing = _UNTIL_CLOSE  # RFC 9112 6.3 item 8: the body ends when the connection closes
        self._close_at_end = framing == _UNTIL_CLOSE or not self._keep
        if self._close_at_end:
            lines.append("Connection: close\r\n")
        elif self._minor == 0:
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        if self._head_only:
            framing = _NO_BODY
        self._remaining = length or 0
        self._framing = framing
        self._send("".join(lines).encode("latin-1"), _SEND_MORE)

    def write(self, data: Union[str, bytes, bytearray, memoryview]) -> int:
        """Send ``data`` (str is UTF-8 encoded); returns the number of bytes taken.

        Sends the default headers first when headers() was not called. Blocks
        while the client lags (see the class docstring). Raises StreamClosed
        (client gone, aborted, server stopping), RuntimeError after end(),
        ValueError when it would exceed a declared Content-Length, TypeError
        for other types. An empty write sends nothing.
        """
        if isinstance(data, str):
            payload = data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            payload = bytes(data)
        else:
            raise TypeError(f"data must be str or bytes, not {type(data).__name__}")
        total = len(payload)
        for start in range(0, total, STREAM_HIGH_WATER):  # large writes go in pieces: memory stays bounded
            self._write_piece(payload[start:start + STREAM_HIGH_WATER])
        if not total:
            self._check_open()
        return total

    def _write_nowait(self, data: bytes) -> bool:
        """Write a small piece without waiting for the client (the keep-alive timer
        must never block); False, sending nothing, while a writer waits for it."""
        if self._waiting:
            return False
        self._write_piece(data, wait=False)
        return True

    def _check_open(self) -> None:
        if self._closed:
            raise StreamClosed("the stream is closed (client gone, aborted or server stopping)")
        if self._finished:
            raise RuntimeError("write() after end()")

    def _write_piece(self, piece: bytes, wait: bool = True) -> None:
        with self._write_lock:
            self._check_open()
            if self._framing is None:
                self._send_head(200, [], None)
            framing = self._framing
            if framing == _NO_BODY:
                return
            if framing == _LENGTH:
                if len(piece) > self._remaining:
                    raise ValueError(f"write() of {len(piece)} bytes exceeds the declared Content-Length "
                                     f"({self._remaining} bytes left)")
                self._remaining -= len(piece)
            elif framing == _CHUNKED:
                piece = b"%x\r\n%b\r\n" % (len(piece), piece)
            with self._cond:
                self._drained = False
            pending = self._send(piece, _SEND_MORE)
        if pending >= STREAM_HIGH_WATER and wait:
            self._wait_drained()

    def _wait_drained(self) -> None:
        with self._cond:
            self._waiting = True
            while not self._closed and not self._drained:
                if self._cond.wait(_WAIT_RECHECK):
                    continue
                pending = self._transport.stream_send(self._fd, self._serial, b"", _SEND_MORE)
                if pending < 0:
                    self._mark_closed()
                elif pending <= STREAM_LOW_WATER:
                    self._drained = True
            self._waiting = False
        if self._closed:
            raise StreamClosed("the client went away while the stream waited for it to read")

    def _send(self, data: bytes, end: int) -> int:
        pending = int(self._transport.stream_send(self._fd, self._serial, data, end))
        if pending < 0:
            self._mark_closed()
            raise StreamClosed("the stream is closed (client gone, aborted or server stopping)")
        return pending

    def end(self) -> None:
        """Finish the response (the terminating chunk); idempotent. Sends the
        default headers first when nothing was sent. With a declared
        Content-Length not yet reached, the connection is aborted instead (the
        client must not take a short body for a whole one) and ValueError is
        raised. Raises StreamClosed when the client is gone."""
        with self._write_lock:
            if self._finished:
                return
            if self._closed:
                raise StreamClosed("the stream is closed (client gone, aborted or server stopping)")
            if self._framing is None:
                self._send_head(200, [], None)
            self._finished = True
            if self._framing == _LENGTH and self._remaining:
                self._transport.stream_abort(self._fd, self._serial)
                self._mark_closed()
                raise ValueError(f"end() with {self._remaining} bytes of the declared Content-Length unsent; "
                                 "the connection was aborted")
            last = b"0\r\n\r\n" if self._framing == _CHUNKED else b""
            self._send(last, _SEND_END_CLOSE if self._close_at_end else _SEND_END)

    def abort(self) -> None:
        """Close the connection at once, the body incomplete (a chunked client
        sees no terminating chunk). Idempotent; never raises for a gone client."""
        self._finished = True
        self._transport.stream_abort(self._fd, self._serial)
        self._mark_closed()

    def _fail(self, status: int) -> None:
        """Answer a whole error response (the handler raised before sending headers)."""
        with self._write_lock:
            if self._framing is not None or self._closed:
                return
            body = b"" if self._head_only else reason_phrase(status).encode("latin-1")
            lines = [f"HTTP/1.1 {status} {reason_phrase(status)}\r\nDate: {http_date(time.time())}\r\n",
                     f"Content-Type: {TEXT_PLAIN}\r\n"]
            lines.extend(f"{n}: {v}\r\n" for n, v in self._security)
            lines.append(f"Content-Length: {len(reason_phrase(status))}\r\n")
            close = not self._keep
            if close:
                lines.append("Connection: close\r\n")
            elif self._minor == 0:
                lines.append("Connection: keep-alive\r\n")
            lines.append("\r\n")
            self._framing = _NO_BODY
            self._finished = True
            try:
                self._send("".join(lines).encode("latin-1") + body, _SEND_END_CLOSE if close else _SEND_END)
            except StreamClosed:
                pass

    # -- from the loop --------------------------------------------------------------
    def _mark_closed(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            callbacks, self._on_close = self._on_close, []
            self._cond.notify_all()
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - a failing observer must not break the loop
                log.exception("stream close callback failed")

    def _notify(self, event: int) -> None:
        """Called by the loop: _EV_DRAINED (output below the low water) or _EV_CLOSED."""
        if event == _EV_CLOSED:
            self._mark_closed()
            return
        with self._cond:
            self._drained = True
            self._cond.notify_all()


class StreamStarter:
    """What the server loop calls for a streaming route:
    ``starter(index, request, fd, serial, minor_version, keep_alive, head_only)``
    creates the :class:`Stream`, runs ``handlers[index](request, stream)`` in a
    daemon thread and returns the stream's notify callable.

    In the thread: a handler that returns without end() is ended; one that
    raises before sending headers gets a 500 (400 for BadRequest) logged
    through ``on_error`` like other handler errors; after headers the
    connection is aborted. StreamClosed escaping the handler (client gone) is
    not an error.
    """

    def __init__(self, transport: Any, handlers: Sequence[Callable[..., Any]],
                 security_headers: Sequence[Tuple[str, str]], on_error: Callable[..., None],
                 bad_request: type) -> None:
        self._transport = transport
        self._handlers = tuple(handlers)
        self._security = tuple(security_headers)
        self._on_error = on_error
        self._bad_request = bad_request

    def __call__(self, index: int, request: Any, fd: int, serial: int, minor_version: int, keep_alive: int,
                 head_only: int) -> Callable[[int], None]:
        stream = Stream(self._transport, fd, serial, request, minor_version=minor_version,
                        keep_alive=bool(keep_alive), head_only=bool(head_only), security_headers=self._security)
        handler = self._handlers[index]
        thread = threading.Thread(target=self._run, args=(handler, stream), daemon=True,
                                  name=f"hypersonic-stream-{serial}")
        thread.start()
        return stream._notify

    def _run(self, handler: Callable[..., Any], stream: Stream) -> None:
        request = stream.request
        try:
            handler(request, stream)
            if not stream.finished and not stream.closed:
                stream.end()
        except StreamClosed:
            log.debug("%s %s: stream closed by the client or the server", request.method, request.path)
        except BaseException as exc:  # noqa: B036 - the thread must always finish its response
            status = 400 if isinstance(exc, self._bad_request) else 500
            target = request.path + (f"?{request.query_string}" if request.query_string else "")
            try:
                self._on_error(exc, status, request.method, target)
            except Exception:  # noqa: BLE001 - logging must not keep the response from finishing
                log.exception("on_error failed")
            if stream.headers_sent:
                stream.abort()
            else:
                stream._fail(status)
