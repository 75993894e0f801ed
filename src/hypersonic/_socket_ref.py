"""Pure-Python reference implementation of the hypersonic.socket API.

Built on the standard library only (``socket``, ``select``, ``os``), it is the
test oracle for the C module (the same behavioural tests run against both; any
difference is a bug in one of them) and the explicit fallback selected with
``HYPERSONIC_JIT=0``. It favours being obviously right over being fast.

Theory of operation, mirroring hs_conn.c / hs_parser.c:

* every fd gets a :class:`_Conn` (read buffer, request state) the first time
  ``http_recv`` sees it; ``close_fd`` and ``http_accept`` drop stale state;
* ``http_recv`` first looks for a complete request in what is buffered (so
  pipelined requests need no new readable event), else does one read (more
  only while each read fills the space offered) and looks again;
* the head parser (:func:`parse_head`) applies the same RFC 9112 rules and
  limits as hs_parser.c and returns the same status codes; chunked bodies are
  decoded by :class:`ChunkedDecoder`, the same state machine;
* event loops are ``select.poll`` objects named by a reserved descriptor
  (``/dev/null`` opened close-on-exec), like the C poll backend.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import select
import socket
import sys
from typing import Any, Dict, List, Optional, Tuple, Union

from ._httpdate import http_date

__all__ = [
    "EV_READ", "EV_WRITE", "EV_ERROR", "RECV_PENDING", "RECV_CLOSED",
    "MAX_REQUEST_TARGET", "MAX_REQUEST_HEAD", "MAX_REQUEST_BODY", "SEND_STALL_TIMEOUT_MS",
    "platform", "event_backend", "create_listen_socket", "create_event_loop", "event_add",
    "event_mod", "event_del", "ev_poll", "http_accept", "http_recv", "http_recv_status",
    "http_send", "http_send_404", "http_send_error", "close_fd",
    "ParsedHead", "parse_head", "ChunkedDecoder", "PARSE_PARTIAL", "PARSE_ERROR",
]

# ---- constants (the same values as hs_event.h, hs_common.h, hs_socketmod.c) ----

EV_READ = 1
EV_WRITE = 2
EV_ERROR = 4
RECV_PENDING = 0
RECV_CLOSED = -1
MAX_REQUEST_TARGET = 8192       # HS_DEFAULT_MAX_URI: longer -> 414
MAX_REQUEST_HEAD = 16384        # HS_DEFAULT_MAX_HEAD: longer -> 431
MAX_HEADERS = 100               # HS_MAX_HEADERS: more -> 431
MAX_REQUEST_BODY = 1024 * 1024  # HS_DEFAULT_MAX_BODY: larger -> 413
MAX_METHOD = 32                 # HS_MAX_METHOD: longer -> 400
SEND_STALL_TIMEOUT_MS = 30000   # http_send gives up after this long without progress
READ_CHUNK = 16384              # HS_READ_CHUNK
RECV_BUDGET = 16 * READ_CHUNK   # HS_CONN_RECV_BUDGET
MAX_EVENTS = 1024               # HS_SOCK_MAX_EVENTS
MAX_CONTENT_TYPE = 1024         # HS_MAX_CONTENT_TYPE
LISTEN_BACKLOG = 4096           # HS_LISTEN_BACKLOG
CHUNK_MAX_SIZE_DIGITS = 16
CHUNK_MAX_LINE = 4096
CHUNK_MAX_TRAILER = MAX_REQUEST_HEAD
_INT_MAX = 2**31 - 1
_PORT_MAX = 65535

PARSE_ERROR = -1
PARSE_PARTIAL = -2

# ---- the request-head parser (RFC 9112; same rules as hs_parser.c) ----

_TCHAR = b"!#$%&'*+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`abcdefghijklmnopqrstuvwxyz|~"
_HOST = b"!$%&'()*+,-.0123456789:;=ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz~"
_TCHAR_SET = frozenset(_TCHAR)
_HOST_SET = frozenset(_HOST)
_TCHAR_RUN = re.compile(b"[" + re.escape(_TCHAR) + b"]*")
_TARGET_RUN = re.compile(rb"[\x21-\x7e]*")             # VCHAR
_VALUE_RUN = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")   # field-vchar, SP, HTAB, obs-text
_OWS_RUN = re.compile(rb"[ \t]*")
_VERSION_SHAPE = b"HTTP/d.d\r\n"


def _run_end(run: "re.Pattern[bytes]", b: bytes, pos: int, end: int) -> int:
    """End of the run of `run` bytes starting at pos (the patterns match empty runs too)."""
    m = run.match(b, pos, end)
    return m.end() if m else pos


class ParsedHead:
    """A parsed request head (what hs_request holds)."""

    __slots__ = ("method", "target", "path", "query", "minor_version", "headers", "keep_alive",
                 "chunked", "content_length", "expect_continue")

    def __init__(self) -> None:
        self.method = b""
        self.target = b""
        self.path = b""
        self.query: Optional[bytes] = None
        self.minor_version = 1
        self.headers: List[Tuple[bytes, bytes]] = []
        self.keep_alive = 1
        self.chunked = 0
        self.content_length = -1
        self.expect_continue = 0

    def request_path(self) -> str:
        """The path http_recv returns: the target as sent; absolute-form reduced to origin-form."""
        if self.target[:1] in (b"/", b"*"):
            return self.target.decode("latin-1")
        query = b"" if self.query is None else b"?" + self.query
        return (self.path + query).decode("latin-1")


class _ParseFailure(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _RanOut(Exception):
    pass


def _elements(value: bytes) -> List[bytes]:
    """RFC 9110 5.6.1 list elements, OWS-trimmed, empty ones kept (as hs_next_element)."""
    return [e.strip(b" \t") for e in value.split(b",")]


def _classify_te(value: bytes) -> str:
    last_chunked = False
    other = False
    count = 0
    for el in _elements(value):
        if not el or not all(c in _TCHAR_SET for c in el):
            return "invalid"
        if last_chunked:
            return "invalid"
        count += 1
        if el.lower() == b"chunked":
            last_chunked = True
        else:
            other = True
    if not last_chunked:
        return "invalid"
    return "chunked" if count == 1 and not other else "unsupported"


def parse_head(buf: Union[bytes, bytearray], max_uri: int = MAX_REQUEST_TARGET, max_head: int = MAX_REQUEST_HEAD,
               max_headers: int = MAX_HEADERS, max_body: int = MAX_REQUEST_BODY) -> Tuple[int, object]:
    """Parse a request head at the start of buf.

    Returns (head_length, ParsedHead) when complete and valid, (PARSE_PARTIAL,
    None) when valid so far, or (PARSE_ERROR, status) with status 400, 413,
    414, 431, 501 or 505 - exactly as hs_parse_request.
    """
    length = len(buf)
    end = min(length, max_head)
    max_headers = min(max_headers, MAX_HEADERS)
    req = ParsedHead()
    try:
        p = _parse_into(bytes(buf[:end]), end, max_uri, max_headers, max_body, req)
    except _RanOut:
        if length >= max_head:
            return PARSE_ERROR, 431
        return PARSE_PARTIAL, None
    except _ParseFailure as failure:
        return PARSE_ERROR, failure.status
    return p, req


def _parse_into(b: bytes, end: int, max_uri: int, max_headers: int, max_body: int, req: ParsedHead) -> int:
    p = 0
    # RFC 9112 2.2: empty lines (CRLF) before the request-line are skipped; bare CR/LF is 400.
    while True:
        if p == end:
            raise _RanOut
        if b[p] != 0x0D:
            if b[p] == 0x0A:
                raise _ParseFailure(400)
            break
        if p + 1 == end:
            raise _RanOut
        if b[p + 1] != 0x0A:
            raise _ParseFailure(400)
        p += 2
    # method = token, at most MAX_METHOD bytes
    mark = p
    p = _run_end(_TCHAR_RUN, b, p, min(end, mark + MAX_METHOD + 1))
    if p - mark > MAX_METHOD:
        raise _ParseFailure(400)
    if p == end:
        raise _RanOut
    if b[p] != 0x20 or p == mark:
        raise _ParseFailure(400)
    req.method = b[mark:p]
    p += 1
    # request-target: VCHAR only, at most max_uri bytes (414)
    mark = p
    p = _run_end(_TARGET_RUN, b, p, end)
    if p - mark > max_uri:
        raise _ParseFailure(414)
    if p == end:
        raise _RanOut
    if b[p] != 0x20 or p == mark:
        raise _ParseFailure(400)
    req.target = b[mark:p]
    p += 1
    # HTTP-version CRLF, byte by byte so a partial line fails early
    avail = end - p
    for i in range(min(len(_VERSION_SHAPE), avail)):
        c = b[p + i]
        shape = _VERSION_SHAPE[i]
        if (not 0x30 <= c <= 0x39) if shape == ord("d") else c != shape:
            raise _ParseFailure(400)
    if avail < len(_VERSION_SHAPE):
        raise _RanOut
    # Only HTTP/1.0 and 1.1; any other well-formed version (1.2 included, as hs_parser.c) is 505
    if b[p + 5] != ord("1") or b[p + 7] not in b"01":
        raise _ParseFailure(505)
    req.minor_version = b[p + 7] - ord("0")
    p += len(_VERSION_SHAPE)

    host_count = 0
    host_invalid = False
    cl_count = 0
    cl_too_large = False
    content_length = 0
    te_count = 0
    te = "none"
    conn_close = False
    conn_keep_alive = False
    expect_continue = False
    while True:
        if p == end:
            raise _RanOut
        if b[p] == 0x0D:
            if p + 1 == end:
                raise _RanOut
            if b[p + 1] != 0x0A:
                raise _ParseFailure(400)
            p += 2
            break
        if b[p] in (0x20, 0x09):  # obs-fold or whitespace before the first field
            raise _ParseFailure(400)
        if len(req.headers) == max_headers:
            raise _ParseFailure(431)
        name_start = p
        p = _run_end(_TCHAR_RUN, b, p, end)
        if p == end:
            raise _RanOut
        if b[p] != 0x3A or p == name_start:
            raise _ParseFailure(400)
        name = b[name_start:p]
        p = _run_end(_OWS_RUN, b, p + 1, end)
        value_start = p
        p = _run_end(_VALUE_RUN, b, p, end)
        if p == end:
            raise _RanOut
        if b[p] != 0x0D:
            raise _ParseFailure(400)
        if p + 1 == end:
            raise _RanOut
        if b[p + 1] != 0x0A:
            raise _ParseFailure(400)
        value = b[value_start:p].rstrip(b" \t")
        p += 2
        req.headers.append((name, value))
        lname = name.lower()
        if lname == b"host":
            host_count += 1
            if any(c not in _HOST_SET for c in value):
                host_invalid = True
        elif lname == b"expect":
            if value.lower() == b"100-continue":
                expect_continue = True
        elif lname == b"connection":
            for el in _elements(value):
                low = el.lower()
                if low == b"close":
                    conn_close = True
                elif low == b"keep-alive":
                    conn_keep_alive = True
        elif lname == b"content-length":
            # RFC 9112 6.3: a repeated field or a list is an unrecoverable framing error
            cl_count += 1
            if cl_count > 1 or not value or not all(0x30 <= c <= 0x39 for c in value):
                raise _ParseFailure(400)
            content_length = int(value)
            if content_length > max_body:
                cl_too_large = True
        elif lname == b"transfer-encoding":
            te_count += 1
            te = _classify_te(value)

    if te_count:
        if te_count > 1 or cl_count or req.minor_version == 0 or te == "invalid":
            raise _ParseFailure(400)
    if host_count > 1 or host_invalid or (host_count == 0 and req.minor_version == 1):
        raise _ParseFailure(400)
    if te == "unsupported":
        raise _ParseFailure(501)
    if cl_too_large:
        raise _ParseFailure(413)
    _split_target(req)
    req.chunked = 1 if te == "chunked" else 0
    req.content_length = content_length if cl_count else -1
    req.expect_continue = 1 if expect_continue else 0
    req.keep_alive = 0 if conn_close else (1 if (req.minor_version == 1 or conn_keep_alive) else 0)
    return p


def _split_target(req: ParsedHead) -> None:
    t = req.target
    n = len(t)
    if t[:1] == b"/":
        path_start = 0
    elif t == b"*":
        if req.method != b"OPTIONS":
            raise _ParseFailure(400)
        req.path, req.query = b"*", None
        return
    else:
        low = t[:8].lower()
        if low.startswith(b"http://"):
            scheme_len = 7
        elif low.startswith(b"https://"):
            scheme_len = 8
        else:
            raise _ParseFailure(400)
        i = scheme_len
        while i < n and t[i] not in b"/?":
            if t[i] == 0x40 or t[i] not in _HOST_SET:
                raise _ParseFailure(400)
            i += 1
        if i == scheme_len:
            raise _ParseFailure(400)
        if i == n or t[i] == 0x3F:
            req.path = b"/"
            req.query = t[i + 1:] if i < n else None
            return
        path_start = i
    q = t.find(b"?", path_start)
    if q < 0:
        req.path, req.query = t[path_start:], None
    else:
        req.path, req.query = t[path_start:q], t[q + 1:]


class ChunkedDecoder:
    """Resumable chunked transfer-coding decoder (RFC 9112 7.1), the hs_decode_chunked machine."""

    (SIZE, SIZE_WS, EXT, SIZE_LF, DATA, DATA_CR, DATA_LF, TRAILER_START, TRAILER_NAME,
     TRAILER_VALUE, TRAILER_LF, FINAL_LF, DONE, ERROR) = range(14)

    def __init__(self, max_body: int = MAX_REQUEST_BODY) -> None:
        self.max_body = max_body
        self.state = self.SIZE
        self.chunk_left = 0
        self.total = 0
        self.line_bytes = 0
        self.trailer_bytes = 0
        self.digits = 0
        self.trailer_line = bytearray()  # the trailer field being read (bounded by CHUNK_MAX_TRAILER)
        self.trailer_content_length_seen = False

    def feed(self, data: bytes) -> Tuple[int, bytes, bytes]:
        """Decode data. Returns (result, payload, rest): result PARSE_PARTIAL (all
        input used), PARSE_ERROR, or >= 0 when the body ended, rest being the
        bytes after it."""
        out = bytearray()
        i = 0
        n = len(data)
        if self.state == self.ERROR:
            return PARSE_ERROR, b"", b""
        while i < n:
            st = self.state
            if st == self.DATA:
                take = min(n - i, self.chunk_left)
                out += data[i:i + take]
                i += take
                self.chunk_left -= take
                self.total += take
                if self.chunk_left == 0:
                    self.state = self.DATA_CR
                continue
            c = data[i]
            line_byte = False
            if st == self.SIZE:
                v = _hex_value(c)
                if v is not None:
                    if self.digits == CHUNK_MAX_SIZE_DIGITS:
                        return self._fail(out)
                    self.digits += 1
                    self.chunk_left = ((self.chunk_left << 4) | v) & 0xFFFFFFFFFFFFFFFF
                    if self.total > self.max_body or self.chunk_left > self.max_body - self.total:
                        self.total = min(self.total + self.chunk_left, 0xFFFFFFFFFFFFFFFF)
                        return self._fail(out)
                elif self.digits == 0:
                    return self._fail(out)
                elif c == 0x0D:
                    self.state = self.SIZE_LF
                    i += 1
                    continue  # the CRLF is not counted in the line's length
                elif c == 0x3B:
                    self.state = self.EXT
                elif c in (0x20, 0x09):
                    self.state = self.SIZE_WS
                else:
                    return self._fail(out)
                line_byte = True
            elif st == self.SIZE_WS:
                if c == 0x0D:
                    return self._fail(out)  # "5 \r\n": BWS only before a chunk-ext
                if c == 0x3B:
                    self.state = self.EXT
                elif c not in (0x20, 0x09):
                    return self._fail(out)
                line_byte = True
            elif st == self.EXT:
                if c == 0x0D:
                    self.state = self.SIZE_LF
                    i += 1
                    continue
                if not (c == 0x09 or 0x20 <= c <= 0x7E or c >= 0x80):
                    return self._fail(out)
                line_byte = True
            elif st == self.SIZE_LF:
                if c != 0x0A:
                    return self._fail(out)
                self.state = self.DATA if self.chunk_left else self.TRAILER_START
                self.line_bytes = 0
                self.digits = 0
                i += 1
                continue
            elif st == self.DATA_CR:
                if c != 0x0D:
                    return self._fail(out)
                self.state = self.DATA_LF
                i += 1
                continue
            elif st == self.DATA_LF:
                if c != 0x0A:
                    return self._fail(out)
                self.state = self.SIZE
                i += 1
                continue
            elif st == self.FINAL_LF:
                self.trailer_bytes += 1
                if c != 0x0A or self.trailer_bytes > CHUNK_MAX_TRAILER:
                    return self._fail(out)
                i += 1
                self.state = self.DONE
                break
            elif st == self.DONE:
                break
            else:  # trailer states
                if st == self.TRAILER_START:
                    if c == 0x0D:
                        self.state = self.FINAL_LF
                    elif c in _TCHAR_SET:
                        self.state = self.TRAILER_NAME
                        self.trailer_line = bytearray((c,))
                    else:
                        return self._fail(out)
                elif st == self.TRAILER_NAME:
                    if c == 0x3A:
                        self.state = self.TRAILER_VALUE
                    elif c not in _TCHAR_SET:
                        return self._fail(out)
                    self.trailer_line.append(c)
                elif st == self.TRAILER_VALUE:
                    if c == 0x0D:
                        self.state = self.TRAILER_LF
                    elif not (c == 0x09 or 0x20 <= c <= 0x7E or c >= 0x80):
                        return self._fail(out)
                    else:
                        self.trailer_line.append(c)
                elif st == self.TRAILER_LF:
                    if c != 0x0A or not self._trailer_field_allowed():
                        return self._fail(out)
                    self.state = self.TRAILER_START
                i += 1
                self.trailer_bytes += 1
                if self.trailer_bytes > CHUNK_MAX_TRAILER:
                    return self._fail(out)
                continue
            if line_byte:
                i += 1
                self.line_bytes += 1
                if self.line_bytes > CHUNK_MAX_LINE:
                    return self._fail(out)
        if self.state == self.DONE:
            rest = data[i:]
            return len(rest), bytes(out), rest
        return PARSE_PARTIAL, bytes(out), b""

    def _trailer_field_allowed(self) -> bool:
        """RFC 9110 6.5.1, as hs_parser.c: a Transfer-Encoding trailer, a second Content-Length
        trailer or one that is not 1*DIGIT is an error; other fields are discarded."""
        name, _, value = bytes(self.trailer_line).partition(b":")
        name = name.lower()
        if name == b"transfer-encoding":
            return False
        if name == b"content-length":
            value = value.strip(b" \t")
            if self.trailer_content_length_seen or not value or not all(0x30 <= b <= 0x39 for b in value):
                return False
            self.trailer_content_length_seen = True
        return True

    def _fail(self, out: bytearray) -> Tuple[int, bytes, bytes]:
        self.state = self.ERROR
        return PARSE_ERROR, bytes(out), b""


def _hex_value(c: int) -> Optional[int]:
    if 0x30 <= c <= 0x39:
        return c - 0x30
    if 0x41 <= c <= 0x46:
        return c - 0x37
    if 0x61 <= c <= 0x66:
        return c - 0x57
    return None


# ---- per-connection state (hs_conn) ----

_HEAD, _BODY, _CHUNKED = 0, 1, 2


class _Conn:
    __slots__ = ("fd", "sock", "rbuf", "state", "req", "body", "decoder", "error_status", "closed",
                 "keep_alive", "head_request", "continue_pending")

    def __init__(self, fd: int, sock: socket.socket) -> None:
        self.fd = fd
        self.sock = sock
        self.rbuf = bytearray()
        self.state = _HEAD
        self.req: Optional[ParsedHead] = None
        self.body = bytearray()
        self.decoder: Optional[ChunkedDecoder] = None
        self.error_status = 0
        self.closed = False
        self.keep_alive = False
        self.head_request = False
        self.continue_pending = False

    def parse(self) -> Optional[Tuple[ParsedHead, bytes]]:
        """A complete request (head, body) from the buffer, else None (see error_status)."""
        if self.state == _HEAD:
            if self.error_status or not self.rbuf:
                return None
            n, result = parse_head(self.rbuf)
            if n == PARSE_PARTIAL:
                return None
            if n == PARSE_ERROR:
                assert isinstance(result, int)
                self.error_status = result
                return None
            assert isinstance(result, ParsedHead)
            req = result
            del self.rbuf[:n]
            self.req = req
            self.body = bytearray()
            if req.chunked:
                self.state = _CHUNKED
                self.decoder = ChunkedDecoder(MAX_REQUEST_BODY)
            elif req.content_length > 0:
                self.state = _BODY
            else:
                return self._ready(b"")
            # RFC 9110 10.1.1: send 100 Continue only while no body byte has arrived
            self.continue_pending = bool(req.expect_continue and req.minor_version == 1 and not self.rbuf)
        if self.rbuf:
            self.continue_pending = False
        assert self.req is not None
        if self.state == _BODY:
            need = self.req.content_length
            if len(self.rbuf) < need:
                return None
            body = bytes(self.rbuf[:need])
            del self.rbuf[:need]
            return self._ready(body)
        assert self.decoder is not None
        result, payload, rest = self.decoder.feed(bytes(self.rbuf))
        self.body += payload
        if result == PARSE_ERROR:
            self.error_status = 413 if self.decoder.total > MAX_REQUEST_BODY else 400
            return None
        if result == PARSE_PARTIAL:
            self.rbuf.clear()
            return None
        self.rbuf[:] = rest
        return self._ready(bytes(self.body))

    def _ready(self, body: bytes) -> Tuple[ParsedHead, bytes]:
        req = self.req
        assert req is not None
        self.state = _HEAD
        self.req = None
        self.decoder = None
        self.body = bytearray()
        self.continue_pending = False
        return req, body

    def recv(self) -> int:
        """Read once (more only while each read fills the space offered): bytes read,
        0 at EOF, -2 when nothing is there, -1 on an error."""
        total = 0
        while True:
            space = READ_CHUNK  # a read that fills it is followed by another
            try:
                data = self.sock.recv(space, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return total if total else -2
            except OSError:
                return total if total else -1
            if not data:
                return total if total else 0
            self.rbuf += data
            total += len(data)
            if len(data) < space or total >= RECV_BUDGET:
                return total


_conns: Dict[int, _Conn] = {}

# One read per readable event (as hs_socketmod.c): each ev_poll call starts a
# round; a drain loop's final http_recv skips the read when ev_poll reported the
# fd in this round and a read already emptied the socket after that report.
_round = 1
_reported_round: Dict[int, int] = {}
_drained_round: Dict[int, int] = {}


def _forget_rounds(fd: int) -> None:
    _reported_round.pop(fd, None)
    _drained_round.pop(fd, None)


def _drop_conn(fd: int) -> None:
    conn = _conns.pop(fd, None)
    if conn is not None:
        conn.sock.detach()


# ---- argument checks (the C module's TypeError/ValueError rules) ----

def _int_arg(fname: str, argname: str, value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{fname}() argument '{argname}' must be int, not {type(value).__name__}")
    return value


def _fd_arg(fname: str, argname: str, value: object) -> int:
    v = _int_arg(fname, argname, value)
    return v if 0 <= v <= _INT_MAX else -1


def _flags_arg(fname: str, value: object) -> int:
    v = _int_arg(fname, "flags", value)
    if v < 0 or v & ~(EV_READ | EV_WRITE):
        raise ValueError(f"{fname}() argument 'flags' must combine EV_READ and EV_WRITE, got {v}")
    return v


def _fd_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return False
    return True


# ---- platform ----

_PLATFORMS = (("linux", "linux"), ("darwin", "darwin"), ("freebsd", "freebsd"), ("openbsd", "openbsd"),
              ("netbsd", "netbsd"))


def platform() -> str:
    """'linux', 'darwin', 'freebsd', 'openbsd' or 'netbsd'; raises OSError elsewhere."""
    for prefix, name in _PLATFORMS:
        if sys.platform.startswith(prefix):
            return name
    raise OSError("hypersonic.socket: unsupported platform (supported: linux, darwin, freebsd, openbsd, netbsd)")


def event_backend() -> str:
    """'poll': the reference waits with select.poll."""
    return "poll"


# ---- sockets ----

def create_listen_socket(port: int, host: Optional[str] = None) -> int:
    """Non-blocking listening TCP socket (SO_REUSEADDR, SO_REUSEPORT); the fd, or -1."""
    port = _int_arg("create_listen_socket", "port", port)
    if host is not None:
        if not isinstance(host, str):
            raise TypeError(f"create_listen_socket() argument 'host' must be str or None, not {type(host).__name__}")
        if "\0" in host:
            raise ValueError("create_listen_socket() argument 'host' contains a NUL character")
    if not 0 <= port <= _PORT_MAX:
        return -1
    candidates: List[Tuple[int, Any]]
    if not host:
        candidates = [(socket.AF_INET, ("0.0.0.0", port))]
    else:
        try:
            infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                                       socket.AI_PASSIVE | socket.AI_NUMERICSERV)
        except (OSError, UnicodeError):
            return -1
        candidates = [(fam, addr) for fam, _, _, _, addr in infos if fam in (socket.AF_INET, socket.AF_INET6)]
    for family, addr in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.setblocking(False)
            sock.bind(addr)
            sock.listen(LISTEN_BACKLOG)
        except OSError:
            sock.close()
            continue
        fd = sock.detach()
        _forget_fd(fd)
        return fd
    return -1


def http_accept(listen_fd: int) -> int:
    """Accept one connection: a non-blocking client fd (TCP_NODELAY), or -1."""
    listen_fd = _fd_arg("http_accept", "listen_fd", listen_fd)
    if listen_fd < 0:
        return -1
    try:
        listener = socket.socket(fileno=listen_fd)
    except OSError:
        return -1
    try:
        while True:
            try:
                conn, _ = listener.accept()
                break
            except ConnectionAbortedError:
                continue
            except OSError:
                return -1
    finally:
        listener.detach()
    conn.setblocking(False)
    try:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # harmless: the socket still works
    fd = conn.detach()
    _drop_conn(fd)
    _forget_fd(fd)
    _forget_rounds(fd)
    return fd


# ---- event loops (select.poll, named by a reserved descriptor) ----

class _Loop:
    __slots__ = ("poller", "registered")

    def __init__(self) -> None:
        self.poller = select.poll()
        self.registered: Dict[int, int] = {}


_loops: Dict[int, _Loop] = {}


def _poll_mask(flags: int) -> int:
    mask = 0
    if flags & EV_READ:
        mask |= select.POLLIN
    if flags & EV_WRITE:
        mask |= select.POLLOUT
    return mask


def _forget_fd(fd: int) -> None:
    for loop in _loops.values():
        if loop.registered.pop(fd, None) is not None:
            loop.poller.unregister(fd)


def create_event_loop(listen_fd: int) -> int:
    """A new event loop with listen_fd registered for reads: its fd, or -1."""
    listen_fd = _fd_arg("create_event_loop", "listen_fd", listen_fd)
    if listen_fd < 0:
        return -1
    try:
        handle = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1
    _loops[handle] = _Loop()
    if _add(handle, listen_fd, EV_READ) < 0:
        del _loops[handle]
        os.close(handle)
        return -1
    return handle


def _add(loop_fd: int, fd: int, flags: int) -> int:
    loop = _loops.get(loop_fd)
    if loop is None or fd < 0 or fd == loop_fd or not _fd_open(fd) or fd in loop.registered:
        return -1
    loop.poller.register(fd, _poll_mask(flags))
    loop.registered[fd] = flags
    return 0


def event_add(loop_fd: int, fd: int, flags: int = EV_READ) -> int:
    """Watch fd for flags (EV_READ by default). 0, or -1."""
    loop_fd = _fd_arg("event_add", "loop_fd", loop_fd)
    fd = _fd_arg("event_add", "fd", fd)
    flags = _flags_arg("event_add", flags)
    if loop_fd < 0 or fd < 0:
        return -1
    return _add(loop_fd, fd, flags)


def event_mod(loop_fd: int, fd: int, flags: int) -> int:
    """Change what fd is watched for. 0, or -1."""
    loop_fd = _fd_arg("event_mod", "loop_fd", loop_fd)
    fd = _fd_arg("event_mod", "fd", fd)
    flags = _flags_arg("event_mod", flags)
    loop = _loops.get(loop_fd)
    if loop is None or fd not in loop.registered:
        return -1
    loop.poller.modify(fd, _poll_mask(flags))
    loop.registered[fd] = flags
    return 0


def event_del(loop_fd: int, fd: int, /) -> int:
    """Stop watching fd. 0, or -1."""
    loop_fd = _fd_arg("event_del", "loop_fd", loop_fd)
    fd = _fd_arg("event_del", "fd", fd)
    loop = _loops.get(loop_fd)
    if loop is None or fd not in loop.registered:
        return -1
    del loop.registered[fd]
    loop.poller.unregister(fd)
    return 0


def ev_poll(loop_fd: int, timeout_ms: int, /) -> List[Tuple[int, int]]:
    """Wait up to timeout_ms (-1: forever): [(fd, flags), ...]; [] on timeout or a bad loop_fd."""
    loop_fd = _fd_arg("ev_poll", "loop_fd", loop_fd)
    timeout = _int_arg("ev_poll", "timeout_ms", timeout_ms)
    global _round
    _round += 1  # every call is a new round, even a failing one
    loop = _loops.get(loop_fd)
    if loop is None:
        return []
    timeout = -1 if timeout < 0 else min(timeout, _INT_MAX)
    try:
        ready = loop.poller.poll(timeout)
    except OSError:
        return []
    events = []
    for fd, revents in ready[:MAX_EVENTS]:
        flags = 0
        if revents & (select.POLLIN | select.POLLPRI):
            flags |= EV_READ
        if revents & select.POLLOUT:
            flags |= EV_WRITE
        if revents & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
            flags |= EV_ERROR
        if flags & (EV_READ | EV_ERROR):
            _reported_round[fd] = _round
        events.append((fd, flags))
    return events


# ---- requests ----

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _conn_for(fd: int) -> Optional[_Conn]:
    conn = _conns.get(fd)
    if conn is not None:
        return conn
    if fd < 0 or not _fd_open(fd):
        return None
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        sock = _NotASocket(fd)  # type: ignore[assignment]
    conn = _Conn(fd, sock)
    _conns[fd] = conn
    return conn


class _NotASocket:
    """Stands in for a socket object for an fd that is not a socket: every read fails."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def recv(self, size: int, flags: int = 0) -> bytes:
        raise OSError(errno.ENOTSOCK, "not a socket")

    def detach(self) -> int:
        return self.fd


def http_recv(fd: int, /) -> Optional[List[Any]]:
    """[method, path, body, keep_alive, fd] for one complete request, else None
    (then http_recv_status tells pending / closed / rejected)."""
    fd = _fd_arg("http_recv", "fd", fd)
    conn = _conn_for(fd)
    if conn is None:
        return None
    attempt = 0
    while True:
        ready = conn.parse()
        if ready is not None:
            req, body = ready
            conn.keep_alive = bool(req.keep_alive)
            conn.head_request = req.method == b"HEAD"
            return [req.method.decode("latin-1"), req.request_path(), body, req.keep_alive, fd]
        if conn.continue_pending:
            try:
                conn.sock.send(_CONTINUE, socket.MSG_DONTWAIT | getattr(socket, "MSG_NOSIGNAL", 0))
            except OSError:
                pass  # best effort, as in C: the client sends the body after its own timeout
            conn.continue_pending = False
        if conn.error_status or conn.closed or attempt > 0:
            return None
        attempt += 1
        if _reported_round.get(fd) == _round and _drained_round.get(fd) == _round:
            del _drained_round[fd]  # drained since this round's report: nothing new to read
            return None
        n = conn.recv()
        if n == -2 or 0 < n < RECV_BUDGET:
            _drained_round[fd] = _round
        if n == -2:
            return None
        if n in (0, -1):
            conn.closed = True
            return None


def http_recv_status(fd: int, /) -> int:
    """RECV_PENDING, RECV_CLOSED, or the HTTP status of a rejected request."""
    fd = _fd_arg("http_recv_status", "fd", fd)
    if fd < 0:
        return RECV_CLOSED
    conn = _conns.get(fd)
    if conn is None:
        return RECV_PENDING
    if conn.error_status:
        return conn.error_status
    if conn.closed:
        return RECV_CLOSED
    return RECV_PENDING


# ---- responses ----

_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 411: "Length Required", 413: "Content Too Large", 414: "URI Too Long",
            431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
            503: "Service Unavailable", 505: "HTTP Version Not Supported"}


def _head(status_line: str, content_type: bytes, body_len: int, keep_alive: bool) -> bytes:
    return (f"HTTP/1.1 {status_line}\r\nDate: {http_date()}\r\nContent-Type: ".encode("latin-1")
            + content_type
            + f"\r\nContent-Length: {body_len}\r\nConnection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
            .encode("latin-1"))


def _last_request(fd: int) -> Tuple[bool, bool]:
    conn = _conns.get(fd)
    if conn is None:
        return False, False
    return conn.keep_alive, conn.head_request


def _send_all(fd: int, parts: List[memoryview]) -> int:
    """Write every part; wait (at most SEND_STALL_TIMEOUT_MS per stall) when the socket is full."""
    total = sum(len(p) for p in parts)
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return -1
    flags = socket.MSG_DONTWAIT | getattr(socket, "MSG_NOSIGNAL", 0)
    try:
        sent = 0
        while sent < total:
            try:
                n = sock.sendmsg([p for p in parts if len(p)], [], flags)
            except (BlockingIOError, InterruptedError):
                poller = select.poll()
                poller.register(fd, select.POLLOUT)
                if not poller.poll(SEND_STALL_TIMEOUT_MS):
                    return -1
                continue
            except OSError:
                return -1
            sent += n
            while parts and n >= len(parts[0]):
                n -= len(parts[0])
                parts.pop(0)
            if parts:
                parts[0] = parts[0][n:]
        return total
    finally:
        sock.detach()


def http_send(fd: int, body: Union[str, bytes], content_type: str = "text/plain") -> int:
    """Write a whole 200 response; bytes written, or -1 (never a silent truncation)."""
    fd = _fd_arg("http_send", "fd", fd)
    if not isinstance(content_type, str):
        raise TypeError(f"http_send() argument 'content_type' must be str, not {type(content_type).__name__}")
    ct = content_type.encode("utf-8")
    if len(ct) > MAX_CONTENT_TYPE:
        raise ValueError(f"http_send() argument 'content_type' is longer than {MAX_CONTENT_TYPE} bytes")
    if any((c < 0x20 and c != 0x09) or c == 0x7F for c in ct):
        raise ValueError("http_send() argument 'content_type' contains a control character")
    if isinstance(body, str):
        payload = memoryview(body.encode("utf-8"))
    else:
        try:
            view = memoryview(body)
        except TypeError:
            raise TypeError(f"http_send() argument 'body' must be str or bytes, not {type(body).__name__}") from None
        if not view.c_contiguous:
            raise BufferError("http_send() argument 'body' is not a C-contiguous buffer")
        payload = view.cast("B")
    if fd < 0:
        return -1
    keep_alive, head_request = _last_request(fd)
    head = memoryview(_head("200 OK", ct, len(payload), keep_alive))
    return _send_all(fd, [head] if head_request else [head, payload])


def http_send_404(fd: int, /) -> int:
    """Write a 404 Not Found response; bytes written, or -1."""
    fd = _fd_arg("http_send_404", "fd", fd)
    if fd < 0:
        return -1
    keep_alive, head_request = _last_request(fd)
    body = b"Not Found"
    head = memoryview(_head("404 Not Found", b"text/plain", len(body), keep_alive))
    return _send_all(fd, [head] if head_request else [head, memoryview(body)])


def http_send_error(fd: int, status: int, /) -> int:
    """Write an error response (status 400..599, Connection: close); bytes written, or -1."""
    fd = _fd_arg("http_send_error", "fd", fd)
    status = _int_arg("http_send_error", "status", status)
    if not 400 <= status <= 599:
        raise ValueError(f"http_send_error() argument 'status' must be 400..599, got {status}")
    if fd < 0:
        return -1
    reason = _REASONS.get(status, "Client Error" if status < 500 else "Server Error").encode("latin-1")
    head = memoryview(_head(f"{status} {reason.decode('latin-1')}", b"text/plain", len(reason), False))
    _, head_request = _last_request(fd)
    return _send_all(fd, [head] if head_request else [head, memoryview(reason)])


def close_fd(fd: int, /) -> int:
    """Close fd (a socket or an event loop) and drop its buffers. 0, or -1."""
    fd = _fd_arg("close_fd", "fd", fd)
    if fd < 0:
        return -1
    _drop_conn(fd)
    _forget_fd(fd)
    _forget_rounds(fd)
    _loops.pop(fd, None)
    try:
        os.close(fd)
    except OSError:
        return -1
    return 0

