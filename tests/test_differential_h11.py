"""Differential property tests: our request parser against h11.

The bytes go through ``hypersonic.socket.http_recv`` on one end of a
``socket.socketpair()``, written in random-sized pieces, so the C parser, the
chunked decoder and the connection buffering (partial reads, pipelining) are
all exercised. h11 is the reference:

* generated VALID requests (RFC 9112 grammar; methods, origin/absolute-form
  targets with queries, header fields with OWS, Content-Length and chunked
  bodies in random chunks with extensions and trailers, HTTP/1.0 and 1.1,
  Connection tokens across several fields, pipelines of 1-3 requests): we
  must accept every one, in order, with the method, target, body that h11
  reads and the keep-alive that RFC 9112 9.3 gives for the headers h11 read;
* MUTATED requests (inserted CR/LF/NUL/SP/HTAB/colon/random bytes, deleted
  bytes, duplicated framing headers, junk chunk sizes, ...): we may reject
  (a 4xx/5xx status) or keep waiting for more bytes, but every request we DO
  accept must be one h11 also reads from the same bytes with the same
  meaning. Never a 2xx-acceptance of a misread request.

Known, deliberate differences from h11 (each where RFC 9112 allows ours):
leading empty lines before a request line are skipped (RFC 9112 2.2; h11
rejects them), so the oracle strips them before h11 sees a request; and h11
never keeps an HTTP/1.0 connection alive, while we follow RFC 9112 9.3
(``Connection: keep-alive``), so keep-alive is computed from h11's headers.

Example counts are bounded (the module runs well under a minute);
``HYPOTHESIS_PROFILE=long`` multiplies them for a longer soak.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import pytest

h11 = pytest.importorskip("h11")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# --------------------------------------------------------------------------
# Budget: bounded by default, longer with HYPOTHESIS_PROFILE=long.
# --------------------------------------------------------------------------

_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
_SCALE = {"long": 40, "ci": 1}.get(_PROFILE, 1)
#: Under tests/sanitize.sh everything runs several times slower; the C paths are the
#: same with fewer examples, so a sanitized run uses a third of them.
_DIVISOR = 3 if os.environ.get("HYPERSONIC_SANITIZED") == "1" and _PROFILE != "long" else 1
VALID_EXAMPLES = 150 * _SCALE // _DIVISOR
INVALID_EXAMPLES = 300 * _SCALE // _DIVISOR


def _budget(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# --------------------------------------------------------------------------
# Parsers under test: the C http_recv, and the pure-Python reference if any.
# --------------------------------------------------------------------------

def _available_backends() -> List[Any]:
    """Every hypersonic.socket backend here (native event backends and the pure-Python reference)."""
    try:
        from hypersonic.socket import available_backends
    except ImportError as exc:  # pragma: no cover - only before the socket layer exists
        return [pytest.param(None, id="no-backend", marks=pytest.mark.skip(reason=str(exc)))]
    # The parser and connection buffering are the same C under every event
    # backend, so the platform's native backend plus the reference suffice.
    names = available_backends()
    chosen = [names[0]] + (["reference"] if "reference" in names[1:] else [])
    return [pytest.param(name, id=name) for name in chosen]


@dataclass(frozen=True)
class Parsed:
    """The meaning of one request, as both sides must agree on it."""

    method: str
    target: str  # in the form http_recv reports it (see Backend.expected_target)
    body: bytes
    keep_alive: int


@dataclass
class Outcome:
    """What a parser made of a byte stream."""

    requests: List[Parsed]
    status: Optional[int]  # rejecting HTTP status, or None (still waiting / all accepted)


class Backend:
    """Feeds bytes to http_recv through a socketpair and collects what it returns."""

    #: http_recv calls after the last piece (pipelined requests already buffered).
    DRAIN_CALLS = 8

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.pending = module.RECV_PENDING
        self.closed = module.RECV_CLOSED

    def expected_target(self, raw_target: str) -> str:
        """What http_recv reports as `path` (hypersonic.socket's documented convention): the
        request-target as sent, query included; an absolute-form target reduced to origin-form."""
        target = raw_target
        lower = target.lower()
        for scheme in ("http://", "https://"):
            if lower.startswith(scheme):
                rest = target[len(scheme):]
                slash = [i for i in (rest.find("/"), rest.find("?")) if i >= 0]
                target = rest[min(slash):] if slash else "/"
                if target.startswith("?"):
                    target = "/" + target
                break
        return target

    def _status(self, fd: int) -> Optional[int]:
        status = self.module.http_recv_status(fd)
        if status in (self.pending, self.closed):
            return None
        assert isinstance(status, int) and 400 <= status <= 599, f"http_recv_status gave {status!r}"
        return status

    def feed(self, pieces: Sequence[bytes]) -> Outcome:
        """Write pieces one by one, calling http_recv after each; then drain."""
        client, server = socket.socketpair()
        server.setblocking(False)
        fd = server.fileno()
        requests: List[Parsed] = []
        status: Optional[int] = None
        try:
            for piece in pieces:
                client.sendall(piece)
                status = self._collect(fd, requests)
                if status is not None:
                    break
            if status is None:
                for _ in range(self.DRAIN_CALLS):
                    status = self._collect(fd, requests)
                    if status is not None:
                        break
        finally:
            self.module.close_fd(fd)  # drops the per-fd connection state too
            server.detach()
            client.close()
        return Outcome(requests, status)

    def _collect(self, fd: int, requests: List[Parsed]) -> Optional[int]:
        """Call http_recv until it has nothing more; return a rejecting status or None."""
        for _ in range(64):  # bounded: at most this many requests per piece
            result = self.module.http_recv(fd)
            if result is None:
                return self._status(fd)
            method, path, body, keep_alive, got_fd = result
            assert got_fd == fd
            assert isinstance(method, str) and isinstance(path, str) and isinstance(body, bytes)
            requests.append(Parsed(method, path, body, int(keep_alive)))
        raise AssertionError("http_recv returned more than 64 requests for one piece")


@pytest.fixture(scope="module", params=_available_backends())
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    """The http_recv of one backend ("epoll"/"kqueue", "poll", "reference")."""
    from hypersonic.socket import load

    return Backend(load(request.param, cache_dir=tmp_path_factory.mktemp("hs_diff_cache")))


# --------------------------------------------------------------------------
# The reference: h11, one fresh connection per request (requests in a
# pipeline are independent), so HTTP/1.0 keep-alive does not stop it.
# --------------------------------------------------------------------------


@dataclass
class Reference:
    requests: List[Parsed]
    error: Optional[str]  # h11's protocol error, if it hit one
    incomplete: bool  # ran out of bytes mid-request


def rfc_keep_alive(version: bytes, headers: Sequence[Tuple[bytes, bytes]]) -> int:
    """RFC 9112 9.3: 1.1 persists unless 'close'; 1.0 only with 'keep-alive' and no 'close'."""
    tokens: Set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    if b"close" in tokens:
        return 0
    if version == b"1.1":
        return 1
    return int(b"keep-alive" in tokens)


def h11_parse(data: bytes, to_target: Callable[[str], str]) -> Reference:
    """Every request h11 reads from data, in order, until an error or the end."""
    requests: List[Parsed] = []
    rest = data
    for _ in range(64):
        while rest.startswith(b"\r\n"):  # RFC 9112 2.2 (see module docstring)
            rest = rest[2:]
        if not rest:
            return Reference(requests, None, False)
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(rest)
        head: Optional[Any] = None
        body = bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    return Reference(requests, None, True)
                if isinstance(event, h11.Request):
                    head = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
        except h11.RemoteProtocolError as exc:
            return Reference(requests, f"{exc} ({exc.error_status_hint})", False)
        assert head is not None
        keep_alive = rfc_keep_alive(head.http_version, head.headers.raw_items())
        requests.append(Parsed(head.method.decode("ascii"), to_target(head.target.decode("latin-1")),
                               bytes(body), keep_alive))
        rest = conn.trailing_data[0]
        if not keep_alive:
            return Reference(requests, None, False)
    return Reference(requests, None, False)


# --------------------------------------------------------------------------
# Strategies: RFC 9110/9112 grammar
# --------------------------------------------------------------------------

ALPHA = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
DIGIT = "0123456789"
TCHAR = ALPHA + DIGIT + "!#$%&'*+-.^_`|~"
UNRESERVED = ALPHA + DIGIT + "-._~"
SUB_DELIMS = "!$&'()*+,;="
PCHAR = UNRESERVED + SUB_DELIMS + ":@"
HEXDIG = DIGIT + "abcdefABCDEF"
#: Names whose semantics the generator controls itself.
FRAMING_NAMES = {"host", "content-length", "transfer-encoding", "connection", "expect", "upgrade", "te",
                 "keep-alive", "trailer"}

#: Source of large bodies (every byte value, cheap to slice).
_PATTERN = bytes(range(256)) * 300

tokens = st.text(alphabet=TCHAR, min_size=1, max_size=12)
methods = st.one_of(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
                    tokens.filter(lambda t: t.upper() not in ("CONNECT", "PRI")))
pct_encoded = st.tuples(st.sampled_from(HEXDIG), st.sampled_from(HEXDIG)).map(lambda t: "%" + t[0] + t[1])
pchar_runs = st.lists(st.one_of(st.text(alphabet=PCHAR, min_size=1, max_size=6), pct_encoded),
                      max_size=4).map("".join)
paths = st.lists(pchar_runs, min_size=1, max_size=4).map(lambda segs: "/" + "/".join(segs))
queries = st.lists(st.one_of(st.text(alphabet=PCHAR + "/?", min_size=1, max_size=8), pct_encoded),
                   max_size=3).map("".join)
hosts = st.text(alphabet=ALPHA + DIGIT + "-.", min_size=1, max_size=12)


@st.composite
def targets(draw: Any, path_strategy: Any = paths) -> str:
    target = draw(path_strategy)
    if draw(st.booleans()):
        target += "?" + draw(queries)
    if draw(st.integers(0, 9)) == 0:  # absolute-form, RFC 9112 3.2.2
        scheme = draw(st.sampled_from(["http", "https", "HTTP"]))
        port = draw(st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")))
        target = f"{scheme}://{draw(hosts)}{port}{target}"
    return target


field_vchars = st.one_of(st.integers(0x21, 0x7E), st.integers(0x80, 0xFF)).map(lambda b: bytes([b]))
field_values = st.lists(st.tuples(st.lists(field_vchars, min_size=1, max_size=6).map(b"".join),
                                  st.sampled_from([b" ", b"\t", b"  "])), max_size=3).flatmap(
    lambda parts: st.lists(field_vchars, min_size=1, max_size=6).map(
        lambda last: b"".join(w + s for w, s in parts) + b"".join(last))) | st.just(b"")
ows = st.sampled_from([b"", b" ", b"\t", b" \t "])


def random_case(draw: Any, word: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in word)


@dataclass
class GeneratedRequest:
    raw: bytes
    method: str
    target: str
    body: bytes
    keep_alive: int


@st.composite
def header_line(draw: Any, name: str, value: bytes) -> bytes:
    return name.encode("ascii") + b":" + draw(ows) + value + draw(ows) + b"\r\n"


@st.composite
def valid_requests(draw: Any, allow_close: bool, target_strategy: Any = None,
                   method_strategy: Any = None) -> GeneratedRequest:
    method = draw(method_strategy if method_strategy is not None else methods)
    target = draw(target_strategy if target_strategy is not None else targets())
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    lines: List[bytes] = []
    if version == b"1.1" or draw(st.booleans()):
        lines.append(draw(header_line(random_case(draw, "host"), draw(hosts).encode())))
    for _ in range(draw(st.integers(0, 4))):
        name = draw(tokens.filter(lambda t: t.lower() not in FRAMING_NAMES))
        lines.append(draw(header_line(name, draw(field_values))))
    # Connection tokens, possibly across several fields, any case (RFC 9110 7.6.1).
    conn_tokens = draw(st.lists(st.sampled_from(["close", "keep-alive", "x-custom"]), max_size=3))
    if not allow_close:
        conn_tokens = [t for t in conn_tokens if t != "close"]
        if version == b"1.0" and "keep-alive" not in conn_tokens:
            conn_tokens.append("keep-alive")
    if conn_tokens:
        if draw(st.booleans()):
            value = b", ".join(random_case(draw, t).encode() for t in conn_tokens)
            lines.append(draw(header_line(random_case(draw, "connection"), value)))
        else:
            for t in conn_tokens:
                lines.append(draw(header_line("Connection", random_case(draw, t).encode())))
    body = draw(st.one_of(st.binary(max_size=300),
                          # now and then larger than one read chunk (16 KiB): buffer growth, memmove
                          st.integers(16_000, 70_000).map(lambda n: _PATTERN[n % 251:n % 251 + n])))
    framing = draw(st.sampled_from(["none", "length", "chunked"] if version == b"1.1" else ["none", "length"]))
    if framing == "none":
        body = b""
        encoded = b""
    elif framing == "length":
        digits = str(len(body)).zfill(len(str(len(body))) + draw(st.integers(0, 2)))
        lines.append(draw(header_line(random_case(draw, "content-length"), digits.encode())))
        encoded = body
    else:
        lines.append(draw(header_line(random_case(draw, "transfer-encoding"), random_case(draw, "chunked").encode())))
        encoded = draw(chunked_encoding(body))
    lines = draw(st.permutations(lines))
    raw = (draw(st.sampled_from([b"", b"", b"\r\n"])) + method.encode() + b" " + target.encode() + b" HTTP/"
           + version + b"\r\n" + b"".join(lines) + b"\r\n" + encoded)
    keep_alive = rfc_keep_alive(version, [(b"connection", ",".join(conn_tokens).encode())])
    return GeneratedRequest(raw, method, target, body, keep_alive)


@st.composite
def chunked_encoding(draw: Any, body: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while pos < len(body):
        size = draw(st.integers(1, len(body) - pos))
        size_text = format(size, draw(st.sampled_from(["x", "X"]))).zfill(draw(st.integers(1, 4)))
        ext = draw(st.sampled_from([b"", b";a", b";name=value", b';q="quoted"', b";a=1;b"]))
        out += size_text.encode() + ext + b"\r\n" + body[pos:pos + size] + b"\r\n"
        pos += size
    out += b"0" + draw(st.sampled_from([b"", b";last"])) + b"\r\n"
    for _ in range(draw(st.integers(0, 2))):  # trailer section
        name = draw(tokens.filter(lambda t: t.lower() not in FRAMING_NAMES))
        out += name.encode() + b": " + draw(field_values) + b"\r\n"
    out += b"\r\n"
    return bytes(out)


@st.composite
def pipelines(draw: Any, target_strategy: Any = None, method_strategy: Any = None) -> List[GeneratedRequest]:
    """1-3 requests; only the last may end the connection."""
    count = draw(st.integers(1, 3))
    return [draw(valid_requests(allow_close=(i == count - 1), target_strategy=target_strategy,
                                method_strategy=method_strategy)) for i in range(count)]


@st.composite
def split_points(draw: Any, data: bytes) -> List[bytes]:
    """data cut into random-sized pieces (single bytes included)."""
    if len(data) <= 1 or draw(st.integers(0, 4)) == 0:
        return [data]
    cuts = sorted(set(draw(st.lists(st.integers(1, len(data) - 1), max_size=12))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


# --------------------------------------------------------------------------
# Mutations that turn valid requests into (mostly) invalid ones.
# --------------------------------------------------------------------------

INSERTABLE = [b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b":", b",", b";", b"\x7f", b"\x0b", b"\xff", b"-",
              b"\r\n\r\n", b"\r\n ", b"0", b"f", b"\"", b"/", b"?", b"#"]
FRAMING_LINES = [b"Content-Length: 0\r\n", b"Content-Length: 5\r\n", b"Content-Length: 99\r\n",
                 b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: identity\r\n",
                 b"Transfer-Encoding: chunked, identity\r\n", b"Transfer-Encoding : chunked\r\n",
                 b"Host: other\r\n", b"Content-Length: +5\r\n", b"Content-Length: 5, 5\r\n",
                 b" folded\r\n", b"X: y\n", b"Connection: close\r\n"]


@st.composite
def mutate(draw: Any, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["insert", "insert_random", "delete", "replace", "framing_line",
                                     "duplicate_line", "chunk_size", "case"]))
        pos = draw(st.integers(0, len(buf)))
        if kind == "insert":
            buf[pos:pos] = draw(st.sampled_from(INSERTABLE))
        elif kind == "insert_random":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=3))
        elif kind == "delete" and buf:
            end = min(len(buf), pos + draw(st.integers(1, 3)))
            del buf[pos:end]
        elif kind == "replace" and pos < len(buf):
            buf[pos] = draw(st.integers(0, 255))
        elif kind in ("framing_line", "duplicate_line"):
            line_starts = [i + 2 for i in range(len(buf) - 1) if buf[i:i + 2] == b"\r\n"]
            if not line_starts:
                continue
            at = draw(st.sampled_from(line_starts))
            if kind == "framing_line":
                buf[at:at] = draw(st.sampled_from(FRAMING_LINES))
            else:
                end = buf.find(b"\r\n", at)
                if end > at:
                    buf[at:at] = buf[at:end + 2]
        elif kind == "chunk_size":
            junk = draw(st.sampled_from([b"-1", b"0x5", b"fffffffffffffffff1", b" 5", b"5 5", b"g", b"+3",
                                         b"", b"00000000000000000000000000005"]))
            idx = buf.find(b"\r\n\r\n")
            if idx >= 0:
                buf[idx + 4:idx + 4] = junk + b"\r\n"
        elif kind == "case":
            buf = bytearray(bytes(buf).swapcase())
    return bytes(buf)


# --------------------------------------------------------------------------
# The properties
# --------------------------------------------------------------------------


@_budget(VALID_EXAMPLES)
@given(data=st.data())
def test_valid_requests_parse_like_h11(backend: Backend, data: Any) -> None:
    pipeline = data.draw(pipelines(), label="pipeline")
    stream = b"".join(r.raw for r in pipeline)
    pieces = data.draw(split_points(stream), label="pieces")
    reference = h11_parse(stream, backend.expected_target)
    # The generator's own claims hold for h11 (guards the oracle, not our parser).
    assert reference.error is None and not reference.incomplete, reference
    assert [(p.method, p.body, p.keep_alive) for p in reference.requests] == [
        (r.method, r.body, r.keep_alive) for r in pipeline]
    outcome = backend.feed(pieces)
    assert outcome.status is None, f"valid request rejected with {outcome.status}: {stream[:400]!r}"
    assert outcome.requests == reference.requests


@_budget(INVALID_EXAMPLES)
@given(data=st.data())
def test_mutated_requests_are_rejected_or_read_exactly_as_h11_reads_them(backend: Backend, data: Any) -> None:
    request = data.draw(valid_requests(allow_close=True), label="request")
    stream = data.draw(mutate(request.raw), label="mutated")
    pieces = data.draw(split_points(stream), label="pieces")
    outcome = backend.feed(pieces)
    reference = h11_parse(stream, backend.expected_target)
    for index, ours in enumerate(outcome.requests):
        assert index < len(reference.requests), (
            f"we accepted request #{index} {ours} that h11 does not read "
            f"(h11: {reference.error or 'needs more data' if reference.incomplete else reference}) "
            f"from {stream[:600]!r}")
        assert ours == reference.requests[index], f"misread: ours {ours} h11 {reference.requests[index]}"
        if not ours.keep_alive:
            break  # the server closes here; later bytes are never parsed
    if outcome.status is not None:
        assert 400 <= outcome.status <= 599


TRAILER_CASES = [
    # (id, trailer lines, expected status or None when accepted) per hs_parser.h / RFC 9110 6.5.1
    ("plain_field_discarded", b"X-T: 1\r\n", None),
    ("valid_content_length_discarded", b"Content-Length: 5\r\n", None),
    ("transfer_encoding_refused", b"Transfer-Encoding: identity\r\n", 400),
    ("transfer_encoding_chunked_refused", b"Transfer-Encoding: chunked\r\n", 400),
    ("repeated_content_length_refused", b"Content-Length: 5\r\nContent-Length: 5\r\n", 400),
    ("invalid_content_length_refused", b"Content-Length: +5\r\n", 400),
]


@pytest.mark.parametrize("trailers,status", [pytest.param(t, s, id=i) for i, t, s in TRAILER_CASES])
def test_trailer_framing_fields_are_handled_alike_by_every_backend(backend: Backend, trailers: bytes,
                                                                   status: Optional[int]) -> None:
    """The C decoder and the reference agree on framing fields in a chunked trailer section,
    and what is accepted is a subset of what h11 accepts, read the same way."""
    data = (b"POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
            + trailers + b"\r\n")
    outcome = backend.feed([data])
    assert outcome.status == status, f"{backend.module.__name__}: {outcome}"
    if status is None:
        assert outcome.requests == [Parsed("POST", "/t", b"abc", 1)]
        assert h11_parse(data, backend.expected_target).requests == outcome.requests
    else:
        assert outcome.requests == []


def test_oracle_rejects_what_it_should() -> None:
    """Sanity of the reference: h11_parse flags errors and incomplete input."""
    ident: Callable[[str], str] = lambda t: t  # noqa: E731
    assert h11_parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", ident).requests[0].method == "GET"
    assert h11_parse(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", ident).error is not None
    assert h11_parse(b"GET / HTTP/1.1\r\nHost: a\r\n", ident).incomplete
    two = h11_parse(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n", ident)
    assert [r.target for r in two.requests] == ["/a", "/b"]
    assert [r.keep_alive for r in two.requests] == [1, 0]


# --------------------------------------------------------------------------
# Through the server: what a dynamic handler sees (method, path, query,
# every header field, body) equals what h11 reads from the same bytes.
# --------------------------------------------------------------------------

ECHO_APP = """
import base64
from hypersonic import Hypersonic

app = Hypersonic(max_request_size=1024 * 1024)

def echo(req):
    return {"method": req.method, "path": req.path, "query": req.query_string, "seg": req.param("seg"),
            "headers": [[n, v] for n, v in req.headers.items_all()],
            "body": base64.b64encode(req.body).decode()}

for method in ("get", "post", "put", "delete", "patch", "options"):
    getattr(app, method)("/e/:seg", echo)
"""

ROUTE_METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
echo_paths = pchar_runs.filter(bool).map(lambda seg: "/e/" + seg)
#: Seconds any read from the echo server may block.
SERVER_IO_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server subprocess whose dynamic routes echo the request as JSON; yields the port."""
    from _server_util import start_app

    server = start_app(ECHO_APP, tmp_path_factory.mktemp("diff_echo"), workers=1)
    try:
        yield server.port
    finally:
        server.stop()


def _read_framed_responses(sock: socket.socket, count: int) -> List[Tuple[int, bytes]]:
    """Read exactly `count` Content-Length framed responses (bounded by the socket timeout)."""
    import re

    buf = b""
    out: List[Tuple[int, bytes]] = []
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"server closed after {len(out)} of {count} responses"
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        status = int(head[9:12])
        length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
        assert length, head
        n = int(length.group(1))
        while len(buf) < n:
            chunk = sock.recv(65536)
            assert chunk, "server closed mid-body"
            buf += chunk
        out.append((status, buf[:n]))
        buf = buf[n:]
    assert not buf, f"unexpected extra bytes after {count} responses: {buf[:200]!r}"
    return out


def _h11_view(data: bytes) -> List[Dict[str, Any]]:
    """Every request h11 reads from data (which must hold only complete, valid ones),
    in the echo route's shape."""
    views: List[Dict[str, Any]] = []
    rest = data
    for _ in range(8):
        while rest.startswith(b"\r\n"):  # RFC 9112 2.2, as in h11_parse
            rest = rest[2:]
        if not rest:
            break
        one = _h11_view_one(rest)
        assert one is not None, "h11 needs more data"
        view, rest, _ = one
        views.append(view)
    return views


@_budget(max(40, VALID_EXAMPLES // 2))
@given(data=st.data())
def test_handler_sees_the_request_h11_reads(echo_server: int, data: Any) -> None:
    import json

    pipeline = data.draw(pipelines(target_strategy=targets(echo_paths), method_strategy=ROUTE_METHODS),
                         label="pipeline")
    stream = b"".join(r.raw for r in pipeline)
    pieces = data.draw(split_points(stream), label="pieces")
    expected = _h11_view(stream)
    assert len(expected) == len(pipeline)
    with socket.create_connection(("127.0.0.1", echo_server), timeout=SERVER_IO_TIMEOUT) as sock:
        for piece in pieces:
            sock.sendall(piece)
        responses = _read_framed_responses(sock, len(pipeline))
    for (status, body), want in zip(responses, expected):
        assert status == 200, body[:300]
        got = json.loads(body)
        del got["seg"]
        got["headers"] = [[n.lower(), v] for n, v in got["headers"]]
        for fields in (got["headers"], want["headers"]):  # h11 lowercases this one value
            for field in fields:
                if field[0] == "transfer-encoding":
                    field[1] = field[1].lower()
        assert got == want


def _read_until_eof(sock: socket.socket, timeout: float) -> Tuple[bytes, bool]:
    """Everything until the server closes; (data, closed) -- bounded by timeout."""
    import time

    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


@_budget(max(40, INVALID_EXAMPLES // 4))
@given(data=st.data())
def test_server_answers_mutated_requests_only_as_h11_reads_them(echo_server: int, data: Any) -> None:
    """Over TCP, after a half-close: every 2xx answer is to a request h11 reads identically."""
    import json
    import re

    request = data.draw(valid_requests(allow_close=True, target_strategy=targets(echo_paths),
                                       method_strategy=ROUTE_METHODS), label="request")
    stream = data.draw(mutate(request.raw), label="mutated")
    with socket.create_connection(("127.0.0.1", echo_server), timeout=SERVER_IO_TIMEOUT) as sock:
        sock.sendall(stream)
        sock.shutdown(socket.SHUT_WR)
        raw, closed = _read_until_eof(sock, SERVER_IO_TIMEOUT)
    assert closed, f"server kept the connection open after the client's FIN: {raw[:300]!r}"
    partial = _h11_prefix(stream)
    answered = 0
    pos = 0
    while pos < len(raw):
        head_end = raw.find(b"\r\n\r\n", pos)
        assert head_end > 0, f"unframed bytes: {raw[pos:pos + 200]!r}"
        head = raw[pos:head_end]
        status = int(head[9:12])
        match = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
        assert match is not None, f"response without Content-Length: {head[:300]!r}"
        length = int(match.group(1))
        body = raw[head_end + 4:head_end + 4 + length]
        pos = head_end + 4 + length
        if 200 <= status < 300:
            got = json.loads(body)
            del got["seg"]
            got["headers"] = [[n.lower(), v] for n, v in got["headers"]]
            assert answered < len(partial), f"2xx to a request h11 does not read: {got} from {stream[:500]!r}"
            want = partial[answered]
            for fields in (got["headers"], want["headers"]):
                for field in fields:
                    if field[0] == "transfer-encoding":
                        field[1] = field[1].lower()
            assert got == want, f"misread request from {stream[:500]!r}"
        else:
            assert 400 <= status <= 599 and status not in (500,), f"status {status}: {body[:200]!r}"
            if status not in (404, 405):  # only "no such route" keeps the connection
                assert pos == len(raw), "an error response was followed by another response"
        answered += 1


def _h11_prefix(data: bytes) -> List[Dict[str, Any]]:
    """The requests h11 reads from data before its first error or missing byte."""
    views: List[Dict[str, Any]] = []
    rest = data
    for _ in range(8):
        while rest.startswith(b"\r\n"):
            rest = rest[2:]
        if not rest:
            break
        try:
            one = _h11_view_one(rest)
        except h11.RemoteProtocolError:
            break
        if one is None:
            break
        view, rest, keep_alive = one
        views.append(view)
        if not keep_alive:
            break
    return views


def _h11_view_one(data: bytes) -> Optional[Tuple[Dict[str, Any], bytes, int]]:
    """(view, bytes after the request, RFC keep-alive) of the first request, None if incomplete;
    raises h11.RemoteProtocolError when h11 rejects it."""
    import base64

    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    head: Any = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            return None
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
    target = head.target.decode("latin-1")
    if target.lower().startswith(("http://", "https://")):
        after = target.split("://", 1)[1]
        cut = min([i for i in (after.find("/"), after.find("?")) if i >= 0], default=len(after))
        target = after[cut:]
    path, _, query = target.partition("?")
    view = {"method": head.method.decode(), "path": path, "query": query,
            "headers": [[n.decode("latin-1").lower(), v.decode("latin-1")] for n, v in head.headers.raw_items()],
            "body": base64.b64encode(bytes(body)).decode()}
    return view, conn.trailing_data[0], rfc_keep_alive(head.http_version, head.headers.raw_items())
