"""The pure-Python server: what an app serves with when native code cannot be built.

:func:`load_server_module` is what ``Hypersonic.compile()`` calls instead of
``load_extension("hs_servermod.c", ...)`` directly:

* ``HYPERSONIC_JIT=0``: the Python server, always;
* otherwise the native module (built, or loaded from the cache: a prebuilt
  cache needs no compiler); if that raises
  :class:`hypersonic.jit.CompilerNotFound` (no compiler or no Python headers,
  and nothing prebuilt for this source), the Python server with ONE warning
  per process naming the fix -- unless ``HYPERSONIC_JIT=1`` demands native
  code, in which case the actionable ``CompilerNotFound`` propagates.

:class:`PyServerModule` has the native module's interface (``configure``,
``serve(listen_fd)``, ``request_stop``, ``stats``, ``backend``) and its
behaviour, on a :mod:`selectors` loop: the request head parser and chunked
decoder are the reference ones of :mod:`hypersonic._socket_ref` (the test
oracle of the C parser), responses are built by the same Python code paths
(static responses baked by ``compile()``, :func:`hypersonic.response.finalize`
and the JSON encoder for dynamic ones) and follow hs_server.c: keep-alive and
pipelining, 100-continue, 404/405/501 and OPTIONS with Allow, the body limit
(413), recv_timeout (408) and keepalive_timeout, max_connections, and the
drain on :meth:`PyServerModule.request_stop` (stop accepting, finish in-flight
requests within drain_ms, then close), and streaming routes (hs_stream.c's
protocol: ``stream_send``/``stream_abort`` from handler threads, which only
append to a per-stream outbox under a lock and wake the loop through its
pipe; the loop moves the bytes to the connection and writes them). It is
correct rather than fast.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
import threading
import time
from types import ModuleType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _socket_ref as ref
from ._httpdate import http_date
from ._codegen import DATE_PLACEHOLDER, METHODS, RouteSpec
from ._compress import request_accepts_gzip
from ._status import reason_phrase

__all__ = ["PyServerModule", "load_server_module", "JIT_ENV", "BACKEND_NAME"]

log = logging.getLogger("hypersonic")

#: Environment switch: "0" forces this server, "1" demands native code.
JIT_ENV = "HYPERSONIC_JIT"
#: What :meth:`PyServerModule.backend` reports.
BACKEND_NAME = "python"
#: Bytes read per recv.
READ_SIZE = 65536
#: Stop answering pipelined requests while this much output waits (as HS_SERVER_OUTPUT_HIGH_WATER).
OUTPUT_HIGH_WATER = 1024 * 1024
#: Most bytes one flush sends of a file body before serving other connections (HS_FILE_FLUSH_BUDGET).
FILE_FLUSH_BUDGET = 4 * 1024 * 1024
#: Connections accepted per readable event of the listener.
ACCEPT_BATCH = 64
#: Longest wait of one loop iteration, seconds (timeouts are checked about once a second).
TICK_SECONDS = 1.0
#: After an error response, unread input is discarded for at most this long before closing.
LINGER_SECONDS = 2.0
#: A connection not answered yet, during a drain, waits this long for its first request.
DRAIN_FRESH_GRACE_SECONDS = 1.0
#: Stream backpressure marks (as HS_STREAM_HIGH_WATER/LOW_WATER; hypersonic.stream uses the same).
STREAM_HIGH_WATER = 256 * 1024
STREAM_LOW_WATER = 64 * 1024
#: Input queued behind a stream beyond this closes the connection (HS_SERVER_STREAM_INPUT_MAX).
STREAM_INPUT_MAX = 64 * 1024
# Stream states and the loop's notify events (hs_stream.c).
_STREAM_OPEN, _STREAM_ENDED, _STREAM_ABORTED = 1, 2, 3
_EV_DRAINED, _EV_CLOSED = 1, 2

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NOT_FOUND = b"Not Found"
_NOT_ALLOWED = b"Method Not Allowed"
_METHOD_INDEX = {name.encode("ascii"): i for i, name in enumerate(METHODS)}
_GET, _HEAD, _OPTIONS = METHODS.index("GET"), METHODS.index("HEAD"), METHODS.index("OPTIONS")

_warned = False


def _allow_line(method_indexes: Sequence[int]) -> bytes:
    names = {METHODS[m] for m in method_indexes}
    if "GET" in names:
        names.add("HEAD")
    names.add("OPTIONS")
    return ("Allow: " + ", ".join(m for m in METHODS if m in names) + "\r\n").encode("ascii")


class _Node:
    __slots__ = ("children", "param", "wild", "routes")

    def __init__(self) -> None:
        self.children: Dict[str, "_Node"] = {}
        self.param: Optional["_Node"] = None
        self.wild: Optional["_Node"] = None  # prefix mount (hs_node.wild_child)
        self.routes: Dict[int, int] = {}  # method index -> route index


class _Conn:
    __slots__ = ("sock", "fd", "rbuf", "wbuf", "req", "head", "decoder", "body", "close_after",
                 "error_close", "linger_until", "started", "last_active", "want_write", "peer_eof",
                 "answered", "streaming", "file")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.req: Optional[ref.ParsedHead] = None
        self.head = b""
        self.decoder: Optional[ref.ChunkedDecoder] = None
        self.body = bytearray()
        self.close_after = False
        self.error_close = False
        self.linger_until = 0.0
        self.started = 0.0  # when the request in progress began (0: none)
        self.last_active = now
        self.want_write = False
        self.peer_eof = False
        self.answered = False  # at least one request answered (HS_CF_ANSWERED)
        self.streaming = False  # a stream owns the connection (HS_CF_STREAMING)
        self.file: Optional[List[int]] = None  # a file body after wbuf: [fd, offset, left] (hs_file.c)


class _StreamRec:
    """One live stream (hs_stream_rec). ``out`` holds bytes the writer thread queued;
    only the loop moves them into the connection's write buffer."""

    __slots__ = ("serial", "conn", "out", "state", "close", "want_drain", "notify")

    def __init__(self, serial: int, conn: _Conn) -> None:
        self.serial = serial
        self.conn = conn
        self.out = bytearray()
        self.state = _STREAM_OPEN
        self.close = False
        self.want_drain = False
        self.notify: Optional[Callable[[int], None]] = None


class PyServerModule(ModuleType):
    """The compiled server module's interface, in Python (see the module docstring)."""

    def __init__(self, specs: Sequence[RouteSpec], security_block: bytes, text_type: str, json_type: str) -> None:
        super().__init__("hypersonic._pyserver.server")
        self._specs = list(specs)
        self._security_block = security_block
        self._text_block = f"Content-Type: {text_type}\r\n".encode("latin-1") + security_block
        self._json_block = f"Content-Type: {json_type}\r\n".encode("latin-1") + security_block
        self._root = _Node()
        all_methods: List[int] = []
        for index, spec in enumerate(self._specs):
            node = self._root
            for seg in spec.segments:
                if seg.startswith(":"):
                    if node.param is None:
                        node.param = _Node()
                    node = node.param
                else:
                    node = node.children.setdefault(seg, _Node())
            if spec.wildcard:
                if node.wild is None:
                    node.wild = _Node()
                node = node.wild
            method = METHODS.index(spec.method)
            node.routes[method] = index
            all_methods.append(method)
        self._allow_all = _allow_line(sorted(set(all_methods)))
        self._config: Dict[str, Any] = {}
        self._stop_requested = False
        self._stop_early = False
        self._running = False
        self._wake_w: Optional[int] = None
        self._stats = dict(requests=0, static_responses=0, python_calls=0, connections=0,
                           open_connections=0, errors=0, wakeups=0, writes=0, write_waits=0)
        self._date = b""
        self._date_second = -1
        self._stream_lock = threading.Lock()  # guards _streams, _stream_wake and every _StreamRec
        self._streams: Dict[int, _StreamRec] = {}
        self._stream_wake: List[int] = []
        self._stream_serial = 0
        self.STREAM_HIGH_WATER = STREAM_HIGH_WATER
        self.STREAM_LOW_WATER = STREAM_LOW_WATER

    # -- the module interface ---------------------------------------------------------

    def configure(self, **config: Any) -> None:
        """Install handlers and limits (the keywords of hs_servermod's configure())."""
        self._config = dict(config)

    def backend(self) -> str:
        """``"python"``: this is not the native loop."""
        return BACKEND_NAME

    def stats(self) -> Dict[str, int]:
        """The loop's counters (same keys as the native module)."""
        return dict(self._stats)

    def request_stop(self) -> None:
        """Stop accepting, finish in-flight requests, return from serve(). Signal-safe."""
        if not self._running:
            self._stop_early = True
            return
        self._stop_requested = True
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    def serve(self, listen_fd: int) -> None:
        """Run the loop on a listening non-blocking socket until request_stop() and the drain end."""
        if self._running:
            raise RuntimeError("serve() is already running in this process")
        cfg = self._config
        self._handlers = cfg["handlers"]
        self._takes = cfg["takes_request"]
        self._names = cfg["param_names"]
        self._request_type = cfg["request_type"]
        self._bad_request = cfg["bad_request"]
        self._json_encode = cfg["json_encode"]
        self._finalize = cfg["finalize"]
        self._on_error = cfg["on_error"]
        self._max_connections = int(cfg["max_connections"])
        self._max_body = int(cfg["max_body"])
        self._keepalive = cfg["keepalive_ms"] / 1000.0
        self._recv = cfg["recv_ms"] / 1000.0
        self._drain = cfg["drain_ms"] / 1000.0
        self._streaming = cfg.get("streaming") or ()
        self._start_stream: Callable[..., Any] = cfg.get("start_stream") or _no_stream_starter
        # app.compress(): the tuple hs_compress.c takes (Compression.native_config), or None
        self._compression: Optional[Tuple[Any, ...]] = cfg.get("compression")
        listener = socket.socket(fileno=listen_fd)
        listener.setblocking(False)
        wake_r, self._wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel = selectors.DefaultSelector()
        self._conns: Dict[int, _Conn] = {}
        self._listener: Optional[socket.socket] = listener
        self._accepting = False
        self._draining = False
        self._pending: Optional[BaseException] = None
        self._running = True
        self._stop_requested = self._stop_early
        self._stop_early = False
        self._sel.register(wake_r, selectors.EVENT_READ, None)
        try:
            self._set_accepting(True)
            self._loop()
        finally:
            self._running = False
            for conn in list(self._conns.values()):
                self._close(conn)
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            self._sel.close()
            os.close(wake_r)
            os.close(self._wake_w)
            self._wake_w = None
        if self._pending is not None:
            exc, self._pending = self._pending, None
            raise exc

    # -- the loop ------------------------------------------------------------------

    def _set_accepting(self, on: bool) -> None:
        if self._listener is None or on == self._accepting:
            return
        if on:
            self._sel.register(self._listener, selectors.EVENT_READ, self._listener)
        else:
            self._sel.unregister(self._listener)
        self._accepting = on

    def _loop(self) -> None:
        drain_deadline = 0.0
        last_sweep = time.monotonic()
        while True:
            if self._stop_requested and not self._draining:
                self._start_drain()
                drain_deadline = time.monotonic() + self._drain
            if self._draining:
                if not self._conns or time.monotonic() >= drain_deadline:
                    return
            try:
                events = self._sel.select(TICK_SECONDS)
            except BaseException as exc:  # noqa: B036 - KeyboardInterrupt from a signal handler: drain, re-raise
                if isinstance(exc, Exception):
                    raise
                self._defer(exc)
                continue
            self._stats["wakeups"] += 1
            self._now = time.monotonic()
            for key, mask in events:
                data = key.data
                if data is None:
                    try:
                        os.read(key.fd, 4096)
                    except OSError:
                        pass
                    self._on_stream_wake()
                elif data is self._listener:
                    self._accept()
                else:
                    conn = data
                    if conn.fd in self._conns and mask & selectors.EVENT_READ:
                        self._on_readable(conn)
                    if conn.fd in self._conns and mask & selectors.EVENT_WRITE:
                        self._flush(conn)
            if self._now - last_sweep >= TICK_SECONDS or self._draining:
                last_sweep = self._now
                self._sweep()

    def _defer(self, exc: BaseException) -> None:
        if self._pending is None:
            self._pending = exc
        self._stop_requested = True

    def _start_drain(self) -> None:
        self._draining = True
        self._now = time.monotonic()
        if self._listener is not None:
            self._accept()  # what the backlog already holds is served too, as the C loop does
            self._set_accepting(False)
            self._listener.close()
            self._listener = None
        for conn in list(self._conns.values()):
            if self._idle_in_drain(conn):
                self._close(conn)  # idle keep-alive: nothing in flight

    def _idle_in_drain(self, conn: _Conn) -> bool:
        """Nothing in flight: close it now that the server drains. A connection not
        answered yet keeps DRAIN_FRESH_GRACE_SECONDS for its first request
        (HS_SERVER_DRAIN_FRESH_GRACE_MS: its client connected before the stop)."""
        if conn.started or conn.wbuf or conn.file or conn.rbuf or conn.streaming:
            return False
        return conn.answered or self._now - conn.last_active >= DRAIN_FRESH_GRACE_SECONDS

    def _accept(self) -> None:
        assert self._listener is not None
        for _ in range(ACCEPT_BATCH):
            if len(self._conns) >= self._max_connections:
                self._set_accepting(False)
                return
            try:
                sock, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept: %s", exc)
                    return
                raise
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            conn = _Conn(sock, self._now)
            self._conns[conn.fd] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)
            self._stats["connections"] += 1
            self._stats["open_connections"] = len(self._conns)

    def _close(self, conn: _Conn) -> None:
        if self._conns.pop(conn.fd, None) is None:
            return
        if conn.streaming:
            self._stream_closed(conn)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        self._release_file(conn)
        self._stats["open_connections"] = len(self._conns)
        if not self._draining and len(self._conns) < self._max_connections:
            self._set_accepting(True)

    def _sweep(self) -> None:
        """recv_timeout (408), keepalive_timeout and the linger deadline, about once a second."""
        now = self._now
        stall = max(self._keepalive, self._recv)
        for conn in list(self._conns.values()):
            if conn.streaming:  # never idle-closed; a reader taking nothing for the stall time is gone
                if conn.wbuf and now - conn.last_active >= stall:
                    self._close(conn)
            elif conn.linger_until:
                if now >= conn.linger_until:
                    self._close(conn)
            elif conn.started:
                if now - conn.started >= self._recv and not conn.wbuf and not conn.file:
                    self._error(conn, 408)
                    self._flush(conn)
            elif self._draining:
                if self._idle_in_drain(conn):
                    self._close(conn)
            elif not conn.wbuf and not conn.file and now - conn.last_active >= self._keepalive:
                self._close(conn)

    # -- reading and answering ---------------------------------------------------------

    def _on_readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            conn.peer_eof = True
            if conn.linger_until or not (conn.wbuf or conn.file) or conn.streaming:  # a streaming client left
                self._close(conn)
            else:
                conn.close_after = True
            return
        if conn.linger_until:
            return  # discarded: the error response is out, the connection is closing
        conn.rbuf += data
        if conn.streaming:  # input behind a stream waits for its end
            if len(conn.rbuf) > STREAM_INPUT_MAX:
                self._close(conn)
            return
        conn.last_active = self._now
        self._process(conn, received=True)
        self._flush(conn)

    def _process(self, conn: _Conn, received: bool = False) -> None:
        answered = False
        while (not conn.close_after and not conn.streaming and len(conn.wbuf) < OUTPUT_HIGH_WATER
               and conn.file is None):
            request = self._parse(conn)
            if request is None:
                break
            head, req, body = request
            self._answer(conn, head, req, body)
            answered = True
        if not conn.rbuf and conn.req is None:
            conn.started = 0.0
        elif not conn.started or answered or (received and conn.req is not None):
            conn.started = self._now

    def _parse(self, conn: _Conn) -> Optional[Tuple[bytes, ref.ParsedHead, bytes]]:
        """A complete request from conn.rbuf, else None (an error response is queued on a bad one)."""
        if conn.req is None:
            if not conn.rbuf:
                return None
            n, result = ref.parse_head(conn.rbuf, max_body=self._max_body)
            if n == ref.PARSE_PARTIAL:
                return None
            if n == ref.PARSE_ERROR:
                assert isinstance(result, int)
                self._error(conn, result)
                return None
            assert isinstance(result, ref.ParsedHead)
            head = bytes(conn.rbuf[:n]).lstrip(b"\r\n")
            del conn.rbuf[:n]
            if result.chunked:
                conn.decoder = ref.ChunkedDecoder(self._max_body)
            elif result.content_length <= 0:
                return head, result, b""
            conn.req, conn.head, conn.body = result, head, bytearray()
            if result.expect_continue and result.minor_version == 1 and not conn.rbuf:
                conn.wbuf += _CONTINUE  # RFC 9110 10.1.1: only while no body byte has arrived
        req = conn.req
        if conn.decoder is None:
            need = req.content_length
            if len(conn.rbuf) < need:
                return None
            body = bytes(conn.rbuf[:need])
            del conn.rbuf[:need]
        else:
            result, payload, rest = conn.decoder.feed(bytes(conn.rbuf))
            conn.body += payload
            if result == ref.PARSE_ERROR:
                self._error(conn, 413 if conn.decoder.total > self._max_body else 400)
                return None
            if result == ref.PARSE_PARTIAL:
                conn.rbuf.clear()
                return None
            conn.rbuf[:] = rest
            body = bytes(conn.body)
        head = conn.head
        conn.req, conn.head, conn.decoder, conn.body = None, b"", None, bytearray()
        return head, req, body

    def _date_now(self) -> bytes:
        second = int(time.time())
        if second != self._date_second:
            self._date_second = second
            self._date = http_date(second).encode("ascii")
        return self._date

    def _begin(self, status: int) -> bytes:
        if not 100 <= status <= 599:
            status = 500
        return f"HTTP/1.1 {status} {reason_phrase(status)}\r\nDate: ".encode("latin-1") + self._date_now() + b"\r\n"

    @staticmethod
    def _connection(keep: bool, minor: int) -> bytes:
        if not keep:
            return b"Connection: close\r\n"
        return b"Connection: keep-alive\r\n" if minor == 0 else b""

    def _simple(self, status: int, extra: bytes, body: bytes, keep: bool, minor: int, head_only: bool) -> bytes:
        """hs_resp_simple: a server-made response carrying the security headers."""
        out = self._begin(status)
        no_content = status in (204, 304)
        if no_content:
            out += self._security_block
        else:
            out += self._text_block + b"Content-Length: %d\r\n" % len(body)
        out += extra + self._connection(keep, minor) + b"\r\n"
        if not head_only and not no_content:
            out += body
        return out

    def _error(self, conn: _Conn, status: int) -> None:
        if not 100 <= status <= 599:
            status = 400
        conn.wbuf += self._simple(status, b"", reason_phrase(status).encode("latin-1"), False, 1, False)
        conn.close_after = True
        conn.error_close = True
        conn.req = None
        self._stats["errors"] += 1

    def _lookup(self, path: str) -> Tuple[Optional[_Node], List[str]]:
        if not path.startswith("/"):
            return None, []
        segments = path[1:].split("/")

        def walk(node: _Node, i: int, values: List[str]) -> Optional[Tuple[_Node, List[str]]]:
            # hs_route_walk: static child, then parameter, then the wildcard (a prefix mount).
            if i == len(segments):
                if node.routes:
                    return node, values
            else:
                seg = segments[i]
                child = node.children.get(seg)
                if child is not None:
                    found = walk(child, i + 1, values)
                    if found is not None:
                        return found
                if node.param is not None and seg:
                    found = walk(node.param, i + 1, values + [seg])
                    if found is not None:
                        return found
            return (node.wild, values) if node.wild is not None else None

        found = walk(self._root, 0, [])
        return (None, []) if found is None else found

    def _answer(self, conn: _Conn, head: bytes, req: ref.ParsedHead, body: bytes) -> None:
        """hs_server_answer."""
        self._stats["requests"] += 1
        conn.answered = True
        keep = bool(req.keep_alive) and not self._draining
        minor = req.minor_version
        method = _METHOD_INDEX.get(req.method, -1)
        if method < 0:
            self._error(conn, 501)
            return
        path = req.path.decode("latin-1")
        if path == "*":
            if method != _OPTIONS:
                self._error(conn, 400)
                return
            conn.wbuf += self._simple(204, self._allow_all, b"", keep, minor, False)
        else:
            node, values = self._lookup(path)
            head_only = method == _HEAD
            if node is None:
                conn.wbuf += self._simple(404, b"", _NOT_FOUND, keep, minor, head_only)
            else:
                route_index = node.routes.get(method, -1)
                if route_index < 0 and head_only:
                    route_index = node.routes.get(_GET, -1)
                if route_index < 0:
                    allow = _allow_line(sorted(node.routes))
                    if method == _OPTIONS:
                        conn.wbuf += self._simple(204, allow, b"", keep, minor, False)
                    else:
                        conn.wbuf += self._simple(405, allow, _NOT_ALLOWED, keep, minor, head_only)
                else:
                    spec = self._specs[route_index]
                    if spec.static:
                        self._stats["static_responses"] += 1
                        self._baked(conn, spec, req, keep, minor, head_only)
                    else:
                        self._stats["python_calls"] += 1
                        keep = self._dynamic(conn, spec, method, req, head, body, values, keep, head_only)
        if not keep:
            conn.close_after = True

    def _baked(self, conn: _Conn, spec: RouteSpec, req: ref.ParsedHead, keep: bool, minor: int,
               head_only: bool) -> None:
        data, head_len, date_off = spec.baked, spec.baked_head_len, spec.baked_date_off
        if spec.gzip_variant is not None and request_accepts_gzip(req.headers):  # HS_ROUTE_STATIC_GZIP
            data, head_len, date_off = spec.gzip_variant
        assert data is not None, "compile() bakes every static route"
        date = self._date_now()
        head = data[:date_off] + date + data[date_off + len(DATE_PLACEHOLDER):head_len]
        conn.wbuf += head + self._connection(keep, minor) + b"\r\n"
        if not head_only:
            conn.wbuf += data[head_len + 2:]

    def _dynamic(self, conn: _Conn, spec: RouteSpec, method: int, req: ref.ParsedHead, head: bytes, body: bytes,
                 values: List[str], keep: bool, head_only: bool) -> bool:
        """hs_dynamic + hs_write_result; returns keep (False after a stopping exception)."""
        index = spec.handler_index
        handler = self._handlers[index]
        if index < len(self._streaming) and self._streaming[index]:
            return self._stream_start(conn, index, method, req, head, body, values, keep, head_only)
        try:
            if self._takes[index]:
                query = "" if req.query is None else req.query.decode("latin-1")
                request = self._request_type(METHODS[method], req.path.decode("latin-1"), query, head, body,
                                             self._names[index], tuple(values))
                result = handler(request)
            else:
                result = handler()
            conn.wbuf += self._serialise(result, req, keep, req.minor_version, head_only, conn)
            return keep
        except BaseException as exc:  # noqa: B036 - as the C loop: 500/400, stopping exceptions re-raised later
            return self._handler_failed(conn, exc, method, req, keep, head_only)

    def _serialise(self, result: Any, req: ref.ParsedHead, keep: bool, minor: int, head_only: bool,
                   conn: _Conn) -> bytes:
        status = 200
        gz_kind = 0  # hs_compress.c: 0 text, 1 JSON, -1 finalize()
        if type(result) is str:
            block, payload = self._text_block, result.encode("utf-8")
        elif type(result) is bytes:
            block, payload = self._text_block, result
        elif type(result) in (dict, list):
            chunks = self._json_encode(result, 0)
            text = chunks if isinstance(chunks, str) else "".join(chunks)
            block, payload = self._json_block, text.encode("utf-8")
            gz_kind = 1
        else:
            gz_kind = -1
            finalized = self._finalize(result)
            if len(finalized) == 5:
                return self._file_result(finalized, keep, minor, head_only, conn)
            if self._compression is not None:
                finalized = self._compression[6](finalized, request_accepts_gzip(req.headers))
            status, block, payload = finalized
            if not 200 <= status <= 599:
                raise ValueError(f"status {status} out of range")
        if self._compression is not None and gz_kind >= 0:
            block, payload = self._gzip_fast(gz_kind, block, payload, req)
        no_content = status in (204, 304)
        out = self._begin(status) + block
        if not no_content:
            out += b"Content-Length: %d\r\n" % len(payload)
        out += self._connection(keep, minor) + b"\r\n"
        if not head_only and not no_content:
            out += payload
        return out

    def _gzip_fast(self, kind: int, block: bytes, payload: bytes, req: ref.ParsedHead) -> Tuple[bytes, bytes]:
        """hs_gzip_fast: the precomputed identity/gzip block of a str/bytes/dict/list result."""
        assert self._compression is not None
        gzip, min_size = self._compression[0], self._compression[1]
        identity, gzip_block = self._compression[2 + 2 * kind], self._compression[3 + 2 * kind]
        if identity is None:
            return block, payload
        if len(payload) >= min_size and request_accepts_gzip(req.headers):
            compressed = gzip(payload)
            if len(compressed) < len(payload):
                return gzip_block, compressed
        return identity, payload

    def _file_result(self, final: Tuple[int, bytes, int, int, int], keep: bool, minor: int, head_only: bool,
                     conn: _Conn) -> bytes:
        """hs_write_file_result: the head now, the file body (conn.file) once the head is written."""
        status, block, fd, offset, length = final
        no_content = status in (204, 304)
        if not 200 <= status <= 599:
            if fd >= 0:
                os.close(fd)
            raise ValueError(f"status {status} out of range")
        out = self._begin(status) + block
        if not no_content:
            out += b"Content-Length: %d\r\n" % length
        out += self._connection(keep, minor) + b"\r\n"
        if fd >= 0:
            if head_only or no_content or length == 0:
                os.close(fd)
            else:
                conn.file = [fd, offset, length]
        return out

    @staticmethod
    def _release_file(conn: _Conn) -> None:
        if conn.file is not None:
            fd = conn.file[0]
            conn.file = None
            os.close(fd)

    def _send_file(self, conn: _Conn) -> Optional[bool]:
        """Send the file body: True when done, False when the socket is full (or the budget is
        used), None after an error (the connection is closed)."""
        assert conn.file is not None
        budget = FILE_FLUSH_BUDGET
        while conn.file[2] > 0:
            if budget <= 0:
                return False
            fd, offset, left = conn.file
            try:
                sent = os.sendfile(conn.fd, fd, offset, min(left, budget))
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                self._close(conn)
                return None
            if sent == 0:  # the file shrank below the Content-Length sent
                self._close(conn)
                return None
            conn.file[1] += sent
            conn.file[2] -= sent
            budget -= sent
            conn.last_active = self._now
        self._release_file(conn)
        return True

    def _handler_failed(self, conn: _Conn, exc: BaseException, method: int, req: ref.ParsedHead, keep: bool,
                        head_only: bool) -> bool:
        status = 500
        if isinstance(exc, self._bad_request):
            status = 400
        elif not isinstance(exc, Exception):
            self._defer(exc)  # KeyboardInterrupt, SystemExit: drain, then re-raise from serve()
            keep = False
        try:
            self._on_error(exc, status, METHODS[method], req.target.decode("latin-1"))
        except Exception:  # noqa: BLE001 - as PyErr_WriteUnraisable
            log.exception("on_error failed")
        conn.wbuf += self._simple(status, b"", reason_phrase(status).encode("latin-1"), keep, req.minor_version,
                                  head_only)
        return keep

    # -- writing ---------------------------------------------------------------------

    def _flush(self, conn: _Conn) -> None:
        self._flush_once(conn)
        if conn.streaming and conn.fd in self._conns and self._stream_flushed(conn):
            self._flush_once(conn)  # the stream ended: close, or go on with pipelined requests

    def _flush_once(self, conn: _Conn) -> None:
        if conn.wbuf or conn.file is not None:
            self._stats["writes"] += 1
            sent = 0
            try:
                if conn.wbuf:  # MSG_MORE before a file body: head and file share a segment (hs_conn_flush)
                    sent = conn.sock.send(conn.wbuf, _MSG_MORE if conn.file is not None else 0)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._close(conn)
                return
            del conn.wbuf[:sent]
            if not conn.wbuf and conn.file is not None:
                if self._send_file(conn) is None:  # after the head: the file body
                    return
            if conn.wbuf or conn.file is not None:
                if sent:
                    conn.last_active = self._now
                if not conn.want_write:
                    self._sel.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
                    conn.want_write = True
                    self._stats["write_waits"] += 1
                return
            conn.last_active = self._now
        if conn.want_write:
            self._sel.modify(conn.sock, selectors.EVENT_READ, conn)
            conn.want_write = False
        if conn.streaming:
            return  # the stream's end decides what comes next (_stream_flushed)
        if not conn.close_after and conn.rbuf and conn.req is None:
            self._process(conn)  # pipelined requests held back at the high water
            if conn.wbuf:
                self._flush(conn)
                return
        if conn.close_after and not conn.linger_until:
            unread = bool(conn.rbuf) or conn.error_close
            if not unread or conn.peer_eof:
                self._close(conn)
                return
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close(conn)
                return
            conn.rbuf.clear()
            conn.linger_until = self._now + LINGER_SECONDS
        elif self._draining and not conn.started and not conn.rbuf and not conn.linger_until:
            self._close(conn)  # drained: its last request is answered


    # -- streaming (the protocol of hs_stream.c) ------------------------------------------

    def _stream_start(self, conn: _Conn, index: int, method: int, req: ref.ParsedHead, head: bytes, body: bytes,
                      values: List[str], keep: bool, head_only: bool) -> bool:
        """hs_stream_start: hand the request to the stream starter (the handler runs in its thread)."""
        query = "" if req.query is None else req.query.decode("latin-1")
        try:
            request = self._request_type(METHODS[method], req.path.decode("latin-1"), query, head, body,
                                         self._names[index], tuple(values))
        except BaseException as exc:  # noqa: B036 - as hs_dynamic
            return self._handler_failed(conn, exc, method, req, keep, head_only)
        with self._stream_lock:
            self._stream_serial += 1
            rec = _StreamRec(self._stream_serial, conn)
            self._streams[conn.fd] = rec
            conn.streaming = True
        try:
            notify = self._start_stream(index, request, conn.fd, rec.serial, req.minor_version, int(keep),
                                        int(head_only))
        except BaseException as exc:  # noqa: B036 - as hs_dynamic
            with self._stream_lock:
                self._streams.pop(conn.fd, None)
                conn.streaming = False
            return self._handler_failed(conn, exc, method, req, keep, head_only)
        rec.notify = notify
        return keep

    def _wake_loop(self) -> None:
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"s")
            except OSError:
                pass  # full: the loop is woken already

    def stream_send(self, fd: int, serial: int, data: bytes, end: int) -> int:
        """From a handler thread: queue framed bytes (end: 0 more, 1 last, 2 last and close).
        Returns the bytes pending on the connection, or -1 when the stream is gone."""
        if end not in (0, 1, 2):
            raise ValueError(f"stream_send: end must be 0, 1 or 2, got {end!r}")
        with self._stream_lock:
            rec = self._streams.get(fd)
            if not self._running or rec is None or rec.serial != serial or rec.state != _STREAM_OPEN:
                return -1
            if data:
                if not rec.out and not rec.conn.wbuf:
                    rec.conn.last_active = time.monotonic()  # the stall clock starts with this output
                rec.out += data
            if end:
                rec.state = _STREAM_ENDED
                rec.close = end == 2
            pending = len(rec.out) + len(rec.conn.wbuf)
            if pending >= STREAM_HIGH_WATER:
                rec.want_drain = True
            if pending or end:
                self._stream_wake.append(fd)
        if pending or end:
            self._wake_loop()
        return pending

    def stream_abort(self, fd: int, serial: int) -> None:
        """From a handler thread: close the stream's connection at once."""
        with self._stream_lock:
            rec = self._streams.get(fd)
            if not self._running or rec is None or rec.serial != serial or rec.state == _STREAM_ABORTED:
                return
            rec.state = _STREAM_ABORTED
            self._stream_wake.append(fd)
        self._wake_loop()

    def _on_stream_wake(self) -> None:
        """hs_stream_on_wake: move queued stream output to its connections and write it."""
        while True:
            with self._stream_lock:
                fds, self._stream_wake = self._stream_wake, []
            if not fds:
                return
            for fd in dict.fromkeys(fds):
                with self._stream_lock:
                    rec = self._streams.get(fd)
                    if rec is None or self._conns.get(fd) is not rec.conn:
                        continue
                    conn = rec.conn
                    conn.wbuf += rec.out
                    rec.out.clear()
                    aborted = rec.state == _STREAM_ABORTED
                if aborted:
                    try:
                        conn.sock.send(conn.wbuf)  # what the socket takes at once; then cut
                    except OSError:
                        pass
                    self._close(conn)
                else:
                    self._flush(conn)

    def _stream_flushed(self, conn: _Conn) -> bool:
        """hs_stream_on_flushed: wake a waiting writer; finish an ended stream (True)."""
        with self._stream_lock:
            rec = self._streams.get(conn.fd)
            if rec is None or rec.conn is not conn:
                return False
            conn.wbuf += rec.out
            rec.out.clear()
            drained = rec.want_drain and len(conn.wbuf) <= STREAM_LOW_WATER
            if drained:
                rec.want_drain = False
            notify = rec.notify
        if drained and notify is not None:
            self._call_notify(notify, _EV_DRAINED)
        with self._stream_lock:
            if rec.state != _STREAM_ENDED or rec.out or conn.wbuf or self._streams.get(conn.fd) is not rec:
                return False
            del self._streams[conn.fd]
            conn.streaming = False
        if rec.close:
            conn.close_after = True
        conn.last_active = self._now
        return True

    def _stream_closed(self, conn: _Conn) -> None:
        """hs_stream_on_close: the connection of a stream closed; tell its writer."""
        with self._stream_lock:
            rec = self._streams.pop(conn.fd, None)
            conn.streaming = False
        if rec is not None and rec.notify is not None:
            self._call_notify(rec.notify, _EV_CLOSED)

    @staticmethod
    def _call_notify(notify: Callable[[int], None], event: int) -> None:
        try:
            notify(event)
        except Exception:  # noqa: BLE001 - as PyErr_WriteUnraisable: the loop goes on
            log.exception("stream notify failed")


def _no_stream_starter(*_args: Any) -> Callable[[int], None]:
    raise RuntimeError("a streaming route was configured without start_stream")


_MSG_MORE = getattr(socket, "MSG_MORE", 0)


def _native_demanded() -> bool:
    return os.environ.get(JIT_ENV, "").strip() == "1"


def python_forced() -> bool:
    """True when ``HYPERSONIC_JIT=0`` asks for the Python server."""
    return os.environ.get(JIT_ENV, "").strip() == "0"


def load_server_module(specs: Sequence[RouteSpec], source: str, security_block: bytes, text_type: str,
                       json_type: str, *, cache_dir: Union[str, "os.PathLike[str]", None],
                       defines: Mapping[str, Optional[str]],
                       load_extension: Optional[Callable[..., ModuleType]] = None) -> ModuleType:
    """The app's server module: native (built or cached), else the Python server.

    See the module docstring for the ``HYPERSONIC_JIT`` rules. Raises
    CompilerNotFound only when ``HYPERSONIC_JIT=1``; CompileError (the compiler
    ran and failed) always propagates: that is a bug to see, not to hide.
    """
    global _warned
    if python_forced():
        log.info("HYPERSONIC_JIT=0: serving with the pure-Python server")
        return PyServerModule(specs, security_block, text_type, json_type)
    from .jit import CompilerNotFound

    if load_extension is None:
        from .jit import load_extension as native_loader
    else:
        native_loader = load_extension
    try:
        return native_loader("hs_servermod.c", default_cache_name="_hypersonic_cache", cache_dir=cache_dir,
                              generated={"hs_app.h": source}, defines=dict(defines))
    except CompilerNotFound as exc:
        if _native_demanded():
            raise
        if not _warned:
            _warned = True
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning(
                "hypersonic: no native code (%s). Serving with the pure-Python server, which is much slower. "
                "Fix: install a C compiler and the Python headers, or ship a cache built with "
                "`hypersonic prebuild MODULE:APP` (and set HYPERSONIC_CACHE_DIR to it); "
                "HYPERSONIC_JIT=1 makes this an error, HYPERSONIC_JIT=0 silences it.", first_line)
        return PyServerModule(specs, security_block, text_type, json_type)
