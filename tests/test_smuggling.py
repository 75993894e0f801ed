"""Request smuggling and malformed input, over real TCP, against a real server.

Each case sends raw bytes to a Hypersonic server running in a subprocess and
reads everything the server sends until it closes the connection (bounded in
time). The oracle for a rejected request:

* exactly ONE response, with the exact status the parser contract
  (``csrc/hs_parser.h``, RFC 9112/9110) names;
* that response says ``Connection: close`` and the server then closes;
* nothing else: a request smuggled behind the rejected one is never answered
  (every byte received is accounted for by the parsed responses);
* afterwards a fresh, well-behaved client is still served.

Accepted-but-unusual inputs (absolute-form target, ``Transfer-Encoding`` in
another case or with tab OWS, chunk extensions, trailers) pin that the body
is read exactly as framed: one response, the echoed body equals the decoded
body, and nothing hidden in the body is answered as a request.
"""

from __future__ import annotations

import re
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import FrozenSet, Iterator, List, Optional, Set, Tuple

import pytest
from _server_util import HOST, start_app

#: Seconds the whole exchange of one case may take (the server answers a bad
#: request immediately; the bound only stops a hung test).
EXCHANGE_TIMEOUT = 10.0
#: The server's body limit in these tests (413 above it).
MAX_BODY = 1024 * 1024

APP_SOURCE = """
from hypersonic import Hypersonic, Response

app = Hypersonic(max_request_size=%d)

@app.get("/health")
def health():
    return "OK"

@app.get("/b")
def b():
    return "B"

@app.get("/smuggled")
def smuggled():
    return "SMUGGLED"

@app.get("/users/:id")
def user(req):
    return {"id": req.param("id")}

@app.post("/echo")
def echo(req):
    return req.body

@app.get("/split/value")
def split_value(req):
    return Response("x", headers={"X-A": req.query_param("v")})

@app.get("/split/name")
def split_name(req):
    return Response("x", headers={req.query_param("v"): "1"})

@app.get("/split/ctype")
def split_ctype(req):
    return Response("x", content_type=req.query_param("v"))

@app.get("/split/tuple")
def split_tuple(req):
    return (200, {"X-B": req.query_param("v")}, "y")
""" % MAX_BODY


# --------------------------------------------------------------------------
# The wire: a careful response splitter (every received byte must belong to a
# response; anything else is an unexplained extra answer).
# --------------------------------------------------------------------------

STATUS_LINE = re.compile(rb"^HTTP/1\.[01] ([1-5][0-9][0-9])(?: [^\r\n]*)?$")


class WireError(AssertionError):
    """The server sent bytes that are not a well-formed HTTP/1.1 response."""


@dataclass
class WireResponse:
    """One response as it appeared on the wire."""

    status: int
    headers: List[Tuple[bytes, bytes]]
    body: bytes = b""

    def header(self, name: bytes) -> Optional[bytes]:
        """The first value of header ``name`` (case-insensitive), or None."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def connection_tokens(self) -> FrozenSet[bytes]:
        """The lowercased tokens of every Connection header field."""
        tokens: Set[bytes] = set()
        for key, value in self.headers:
            if key.lower() == b"connection":
                tokens.update(t.strip().lower() for t in value.split(b","))
        return frozenset(tokens)


@dataclass
class Exchange:
    """What the server sent back for one client connection."""

    responses: List[WireResponse] = field(default_factory=list)  # final (non-1xx) responses
    interim: List[WireResponse] = field(default_factory=list)  # 1xx responses
    closed_by_server: bool = False  # EOF (or reset) seen before the deadline
    raw: bytes = b""

    @property
    def statuses(self) -> List[int]:
        return [r.status for r in self.responses]


def _decode_chunked_response(data: bytes, pos: int) -> Tuple[bytes, int]:
    body = bytearray()
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise WireError(f"truncated chunked response at {pos}: {data[pos:pos + 80]!r}")
        size_text = data[pos:eol].split(b";", 1)[0].strip()
        if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_text):
            raise WireError(f"bad chunk size in response: {size_text!r}")
        size = int(size_text, 16)
        pos = eol + 2
        if size == 0:
            end = data.find(b"\r\n", pos)
            while end != pos:  # trailers
                if end < 0:
                    raise WireError("truncated response trailers")
                pos = end + 2
                end = data.find(b"\r\n", pos)
            return bytes(body), pos + 2
        if len(data) < pos + size + 2 or data[pos + size:pos + size + 2] != b"\r\n":
            raise WireError("truncated or malformed response chunk")
        body += data[pos:pos + size]
        pos += size + 2


def split_responses(data: bytes, eof: bool) -> Tuple[List[WireResponse], List[WireResponse]]:
    """Split everything received into (final responses, interim responses).

    Raises WireError when a byte cannot be explained as part of a response.
    A response without Content-Length or chunked framing runs to EOF.
    """
    finals: List[WireResponse] = []
    interim: List[WireResponse] = []
    pos = 0
    while pos < len(data):
        head_end = data.find(b"\r\n\r\n", pos)
        if head_end < 0:
            raise WireError(f"unexplained bytes after {len(finals)} response(s): {data[pos:pos + 200]!r}")
        lines = data[pos:head_end].split(b"\r\n")
        match = STATUS_LINE.match(lines[0])
        if not match:
            raise WireError(f"not a status line: {lines[0][:200]!r}")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise WireError(f"bad response header line: {line!r}")
            headers.append((name, value.strip()))
        resp = WireResponse(int(match.group(1)), headers)
        pos = head_end + 4
        if 100 <= resp.status < 200:
            interim.append(resp)
            continue
        te = resp.header(b"transfer-encoding")
        cl = resp.header(b"content-length")
        if resp.status in (204, 304):
            pass
        elif te is not None and te.lower().endswith(b"chunked"):
            resp.body, pos = _decode_chunked_response(data, pos)
        elif cl is not None:
            if not cl.isdigit():
                raise WireError(f"bad response Content-Length {cl!r}")
            n = int(cl)
            if len(data) - pos < n:
                raise WireError(f"truncated response body: want {n}, have {len(data) - pos}")
            resp.body = data[pos:pos + n]
            pos += n
        else:
            if not eof:
                raise WireError("close-delimited response without EOF")
            resp.body = data[pos:]
            pos = len(data)
        finals.append(resp)
    return finals, interim


def exchange(port: int, payload: bytes, *, timeout: float = EXCHANGE_TIMEOUT,
             shut_write: bool = False) -> Exchange:
    """Send payload on a new connection, read until the server closes or timeout.

    Never half-closes unless shut_write (a half-close would let a server that
    waits for more bytes look like one that rejected). A reset after data
    counts as closed (what was received is kept).
    """
    deadline = time.monotonic() + timeout
    result = Exchange()
    received = bytearray()
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(payload)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                result.closed_by_server = True
                break
            if not chunk:
                result.closed_by_server = True
                break
            received += chunk
    result.raw = bytes(received)
    result.responses, result.interim = split_responses(result.raw, eof=result.closed_by_server)
    return result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Hypersonic server subprocess (one worker) on a free loopback port; yields the port."""
    proc = start_app(APP_SOURCE, tmp_path_factory.mktemp("smuggling"), workers=1)
    try:
        yield proc.port
    finally:
        code = proc.stop()
    # A crash (e.g. a sanitizer abort) during the module fails the last teardown loudly.
    assert code == 0 or code == -signal.SIGTERM, f"server exited with {code}; output:\n{proc.output()[-4000:]}"


def assert_still_serving(port: int) -> None:
    """A fresh well-behaved client gets its 200 (the server serves everyone else)."""
    result = exchange(port, b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert result.statuses == [200], result.raw[:300]
    assert result.responses[0].body == b"OK"


# --------------------------------------------------------------------------
# Rejected inputs: one exact 4xx/5xx, Connection: close, closed, nothing else.
# --------------------------------------------------------------------------

H = b"Host: t\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"


def post(headers: bytes, body: bytes, version: bytes = b"1.1") -> bytes:
    """A POST /echo with the given raw header lines (each ending CRLF) and body."""
    host = H if version == b"1.1" else b""
    return b"POST /echo HTTP/" + version + b"\r\n" + host + headers + b"\r\n" + body


REJECTED: List[Tuple[str, bytes, FrozenSet[int]]] = [
    # --- CL.TE / TE.CL: both framings present (RFC 9112 6.1: MAY reject; we must, then close).
    ("cl_te_both_present_smuggles_get",
     post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED), frozenset({400})),
    ("te_cl_both_present_smuggles_get",
     post(b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
          b"5c\r\n" + SMUGGLED + b"\r\n0\r\n\r\n"), frozenset({400})),
    ("cl_te_with_zero_cl",
     post(b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), frozenset({400})),
    # --- TE.TE: obfuscated Transfer-Encoding
    ("te_space_before_colon", post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n" + SMUGGLED), frozenset({400})),
    ("te_tab_before_colon", post(b"Transfer-Encoding\t: chunked\r\n", b"0\r\n\r\n" + SMUGGLED), frozenset({400})),
    ("te_obs_fold_value", post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n" + SMUGGLED), frozenset({400})),
    ("te_duplicate_fields",
     post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED), frozenset({400})),
    ("te_duplicate_fields_identity_second",
     post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", b"0\r\n\r\n" + SMUGGLED),
     frozenset({400})),
    ("te_duplicate_with_cl",
     post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\nContent-Length: 5\r\n", b"0\r\n\r\n"),
     frozenset({400})),
    ("te_chunked_then_identity_not_final_chunked",
     post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n" + SMUGGLED), frozenset({400})),
    ("te_identity_then_chunked_unsupported_coding",
     post(b"Transfer-Encoding: identity, chunked\r\n", b"0\r\n\r\n" + SMUGGLED), frozenset({501})),
    ("te_gzip_chunked_unsupported_coding",
     post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n" + SMUGGLED), frozenset({501})),
    # chunked applied twice is forbidden (RFC 9112 6.1); the contract's "other list ending in chunked" is 501.
    ("te_chunked_twice_in_list", post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
     frozenset({400, 501})),
    ("te_xchunked", post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n" + SMUGGLED), frozenset({400})),
    ("te_chunked_suffix_junk", post(b"Transfer-Encoding: chunkedx\r\n", b"0\r\n\r\n"), frozenset({400})),
    ("te_quoted_chunked", post(b"Transfer-Encoding: \"chunked\"\r\n", b"0\r\n\r\n"), frozenset({400})),
    ("te_vertical_tab_in_value", post(b"Transfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n"), frozenset({400})),
    ("te_formfeed_in_value", post(b"Transfer-Encoding: chunked\x0c\r\n", b"0\r\n\r\n"), frozenset({400})),
    ("te_nul_in_value", post(b"Transfer-Encoding: chunked\x00\r\n", b"0\r\n\r\n"), frozenset({400})),
    ("te_empty_value", post(b"Transfer-Encoding: \r\n", b"0\r\n\r\n"), frozenset({400})),
    ("te_in_http10", post(b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED, version=b"1.0"),
     frozenset({400})),
    # --- Content-Length
    ("cl_duplicate_equal", post(b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"), frozenset({400})),
    ("cl_duplicate_conflicting", post(b"Content-Length: 3\r\nContent-Length: 40\r\n", b"abc" + SMUGGLED),
     frozenset({400})),
    ("cl_duplicate_differing_name_case", post(b"Content-Length: 3\r\ncontent-LENGTH: 3\r\n", b"abc"),
     frozenset({400})),
    ("te_and_cl_differing_name_case",
     post(b"content-length: 6\r\nTRANSFER-ENCODING: chunked\r\n", b"0\r\n\r\n" + SMUGGLED), frozenset({400})),
    ("cl_list_equal", post(b"Content-Length: 3, 3\r\n", b"abc"), frozenset({400})),
    ("cl_list_conflicting", post(b"Content-Length: 3, 40\r\n", b"abc" + SMUGGLED), frozenset({400})),
    ("cl_plus_sign", post(b"Content-Length: +3\r\n", b"abc"), frozenset({400})),
    ("cl_negative", post(b"Content-Length: -1\r\n", b"abc"), frozenset({400})),
    ("cl_hex", post(b"Content-Length: 0x3\r\n", b"abc"), frozenset({400})),
    ("cl_decimal_point", post(b"Content-Length: 3.0\r\n", b"abc"), frozenset({400})),
    ("cl_inner_space", post(b"Content-Length: 1 2\r\n", b"abcdefghijkl"), frozenset({400})),
    ("cl_empty", post(b"Content-Length: \r\n", b""), frozenset({400})),
    ("cl_space_before_colon", post(b"Content-Length : 3\r\n", b"abc"), frozenset({400})),
    ("cl_obs_fold", post(b"Content-Length:\r\n 3\r\n", b"abc"), frozenset({400})),
    ("cl_above_max_body", post(b"Content-Length: %d\r\n" % (MAX_BODY + 1), b"abc"), frozenset({413})),
    ("cl_huge", post(b"Content-Length: 1000000000000\r\n", b"abc"), frozenset({413})),
    ("cl_overflows_uint64", post(b"Content-Length: 100000000000000000000000000000\r\n", b"abc"),
     frozenset({413})),
    # --- chunk sizes and framing
    ("chunk_size_negative", post(b"Transfer-Encoding: chunked\r\n", b"-5\r\nhello\r\n0\r\n\r\n"), frozenset({400})),
    ("chunk_size_hex_prefix", post(b"Transfer-Encoding: chunked\r\n", b"0x5\r\nhello\r\n0\r\n\r\n"), frozenset({400})),
    ("chunk_size_junk_after_digits",
     post(b"Transfer-Encoding: chunked\r\n", b"5g\r\nhello\r\n0\r\n\r\n"), frozenset({400})),
    ("chunk_size_leading_space", post(b"Transfer-Encoding: chunked\r\n", b" 5\r\nhello\r\n0\r\n\r\n"),
     frozenset({400})),
    ("chunk_size_empty", post(b"Transfer-Encoding: chunked\r\n", b"\r\nhello\r\n0\r\n\r\n"), frozenset({400})),
    ("chunk_size_plus", post(b"Transfer-Encoding: chunked\r\n", b"+5\r\nhello\r\n0\r\n\r\n"), frozenset({400})),
    ("chunk_size_overflows_uint64",
     post(b"Transfer-Encoding: chunked\r\n", b"1" + b"0" * 16 + b"5\r\nhello\r\n0\r\n\r\n"), frozenset({400, 413})),
    ("chunk_size_very_long_zero_padded",
     post(b"Transfer-Encoding: chunked\r\n", b"0" * 200 + b"5\r\nhello\r\n0\r\n\r\n"), frozenset({400})),
    ("chunk_size_above_max_body",
     post(b"Transfer-Encoding: chunked\r\n", b"%x\r\nhello" % (MAX_BODY + 1)), frozenset({413})),
    ("chunk_size_huge", post(b"Transfer-Encoding: chunked\r\n", b"ffffffffffff\r\nhello"), frozenset({413})),
    ("chunk_data_not_followed_by_crlf",
     post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabcXY0\r\n\r\n" + SMUGGLED), frozenset({400})),
    ("chunk_data_longer_than_size",
     post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabcdef\r\n0\r\n\r\n"), frozenset({400})),
    ("chunk_size_line_bare_lf", post(b"Transfer-Encoding: chunked\r\n", b"3\nabc\r\n0\r\n\r\n"), frozenset({400})),
    ("chunk_data_bare_lf_terminator",
     post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\n0\r\n\r\n"), frozenset({400})),
    ("chunk_last_bare_lf", post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\n\n" + SMUGGLED),
     frozenset({400})),
    ("chunk_ext_with_bare_cr",
     post(b"Transfer-Encoding: chunked\r\n", b"3;a=\rb\r\nabc\r\n0\r\n\r\n"), frozenset({400})),
    ("chunk_trailer_obs_fold",
     post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\nX: a\r\n b\r\n\r\n"), frozenset({400})),
    ("chunk_trailer_bare_lf",
     post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\nX: a\n\r\n"), frozenset({400})),
    ("chunk_ext_overlong", post(b"Transfer-Encoding: chunked\r\n", b"1;" + b"a" * 5000 + b"\r\nx\r\n0\r\n\r\n"),
     frozenset({400})),
    ("chunk_trailer_section_too_large",
     post(b"Transfer-Encoding: chunked\r\n", b"1\r\nx\r\n0\r\nX: " + b"a" * 20000 + b"\r\n\r\n"), frozenset({400})),
    ("te_list_with_spaces_identity_chunked",
     post(b"Transfer-Encoding: identity , chunked\r\n", b"0\r\n\r\n" + SMUGGLED), frozenset({501})),
    ("te_chunked_on_get_with_bad_chunk", b"GET /health HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
     frozenset({400})),
    ("chunk_trailer_transfer_encoding",
     post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n" + SMUGGLED),
     frozenset({400})),
    ("chunk_trailer_repeated_content_length",
     post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"),
     frozenset({400})),
    ("chunk_trailer_invalid_content_length",
     post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\nContent-Length: -1\r\n\r\n"), frozenset({400})),
    # --- line endings and control characters
    ("bare_lf_request_line", b"GET /health HTTP/1.1\nHost: t\r\n\r\n", frozenset({400})),
    ("bare_lf_header_line", b"GET /health HTTP/1.1\r\nHost: t\nX: y\r\n\r\n", frozenset({400})),
    ("bare_lf_everywhere", b"GET /health HTTP/1.1\nHost: t\n\n", frozenset({400})),
    ("bare_lf_end_of_head_smuggles",
     b"GET /health HTTP/1.1\r\nHost: t\r\n\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("bare_cr_in_header_line", b"GET /health HTTP/1.1\r\nHost: t\rX: y\r\n\r\n", frozenset({400})),
    ("bare_cr_in_request_line", b"GET /health\rHTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("bare_cr_end_of_head", b"GET /health HTTP/1.1\r\nHost: t\r\r\n\r\n", frozenset({400})),
    ("obs_fold_header", b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n", frozenset({400})),
    ("obs_fold_tab", b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\r\n\tb\r\n\r\n", frozenset({400})),
    ("first_header_line_starts_with_space", b"GET /health HTTP/1.1\r\n Host: t\r\n\r\n", frozenset({400})),
    ("nul_in_header_value", b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n", frozenset({400})),
    ("nul_in_header_name", b"GET /health HTTP/1.1\r\nHost: t\r\nX-\x00A: b\r\n\r\n", frozenset({400})),
    ("nul_in_request_target", b"GET /hea\x00lth HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("nul_in_method", b"G\x00ET /health HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("ctl_in_header_value", b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n", frozenset({400})),
    ("del_in_header_value", b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\x7fb\r\n\r\n", frozenset({400})),
    ("ctl_in_request_target", b"GET /hea\x01lth HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    # --- header names
    ("header_name_with_space", b"GET /health HTTP/1.1\r\nHost: t\r\nX A: b\r\n\r\n", frozenset({400})),
    ("header_name_empty", b"GET /health HTTP/1.1\r\nHost: t\r\n: b\r\n\r\n", frozenset({400})),
    ("header_name_separator_char", b"GET /health HTTP/1.1\r\nHost: t\r\nX(A): b\r\n\r\n", frozenset({400})),
    ("header_name_slash", b"GET /health HTTP/1.1\r\nHost: t\r\nX/A: b\r\n\r\n", frozenset({400})),
    ("header_name_non_ascii", b"GET /health HTTP/1.1\r\nHost: t\r\nX\xc3\xa9: b\r\n\r\n", frozenset({400})),
    ("header_line_without_colon", b"GET /health HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n", frozenset({400})),
    # --- request targets
    ("authority_form_connect", b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n", frozenset({400})),
    ("authority_form_with_get", b"GET t:80 HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("relative_target_no_slash", b"GET health HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("target_with_space", b"GET /hea lth HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("empty_target", b"GET  HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("uri_too_long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({414})),
    ("absolute_form_with_userinfo", b"GET http://u@t/health HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("absolute_form_empty_host", b"GET http:///health HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("absolute_form_other_scheme", b"GET ftp://t/health HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("asterisk_form_with_get", b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    # --- Host (RFC 9112 3.2)
    ("missing_host_http11", b"GET /health HTTP/1.1\r\n\r\n", frozenset({400})),
    ("duplicate_host", b"GET /health HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", frozenset({400})),
    ("duplicate_host_same_value", b"GET /health HTTP/1.1\r\nHost: t\r\nHost: t\r\n\r\n", frozenset({400})),
    ("host_with_space", b"GET /health HTTP/1.1\r\nHost: a b\r\n\r\n", frozenset({400})),
    ("host_with_slash", b"GET /health HTTP/1.1\r\nHost: a/b\r\n\r\n", frozenset({400})),
    ("host_with_userinfo", b"GET /health HTTP/1.1\r\nHost: u@a\r\n\r\n", frozenset({400})),
    # --- method
    ("method_overlong", b"G" * 64 + b" /health HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("method_one_over_limit", b"A" * 33 + b" /health HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("method_with_separator", b"GE(T /health HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("method_empty", b" /health HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    # --- version and request-line shape
    ("version_http2", b"GET /health HTTP/2.0\r\nHost: t\r\n\r\n", frozenset({505})),
    ("version_http12", b"GET /health HTTP/1.2\r\nHost: t\r\n\r\n", frozenset({505})),
    ("version_http30", b"GET /health HTTP/3.0\r\nHost: t\r\n\r\n", frozenset({505})),
    ("version_http09_explicit", b"GET /health HTTP/0.9\r\nHost: t\r\n\r\n", frozenset({505})),
    ("http09_style_request", b"GET /health\r\n\r\n", frozenset({400})),
    ("version_lowercase", b"GET /health http/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("version_no_minor", b"GET /health HTTP/1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("version_two_digit_major", b"GET /health HTTP/11.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("version_trailing_space", b"GET /health HTTP/1.1 \r\nHost: t\r\n\r\n", frozenset({400})),
    ("double_space_after_method", b"GET  /health HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("tab_as_separator", b"GET\t/health\tHTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("leading_space_request_line", b" GET /health HTTP/1.1\r\nHost: t\r\n\r\n", frozenset({400})),
    ("http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", frozenset({505})),
    ("tls_client_hello", bytes.fromhex("16030100a5010000a10303") + b"\x00" * 40 + b"\r\n\r\n", frozenset({400})),
    ("binary_garbage", bytes(range(256)) + b"\r\n\r\n", frozenset({400})),
    ("only_garbage_line", b"hello there\r\n\r\n", frozenset({400})),
    # --- size limits of the head
    ("header_section_too_large",
     b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", frozenset({431})),
    ("too_many_headers",
     b"GET /health HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(150)) + b"\r\n",
     frozenset({431})),
]


@pytest.mark.parametrize("payload,expected", [pytest.param(p, e, id=i) for i, p, e in REJECTED])
def test_malformed_request_gets_one_error_response_and_close(server: int, payload: bytes,
                                                             expected: FrozenSet[int]) -> None:
    result = exchange(server, payload)
    assert result.closed_by_server, f"server did not close within {EXCHANGE_TIMEOUT}s; got {result.raw[:300]!r}"
    assert len(result.responses) == 1, f"expected exactly one response, got {result.statuses}: {result.raw[:600]!r}"
    response = result.responses[0]
    assert response.status in expected, f"status {response.status}, expected one of {sorted(expected)}"
    assert b"close" in response.connection_tokens(), f"no Connection: close in {response.headers}"
    assert_still_serving(server)


def test_error_after_good_request_on_same_connection_answers_both_then_closes(server: int) -> None:
    payload = (b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
               + post(b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")
               + SMUGGLED)
    result = exchange(server, payload)
    assert result.closed_by_server
    assert result.statuses == [200, 400], result.raw[:600]
    assert b"close" in result.responses[1].connection_tokens()


def test_look_alike_te_name_is_not_framing_and_its_body_is_rejected_as_a_request(server: int) -> None:
    """`Transfer_Encoding` is a valid field name but not Transfer-Encoding: the POST has no body, and the
    chunked bytes that follow are read as the next request, which is malformed: answered 400 and closed,
    so the request hidden behind them is never served."""
    payload = post(b"Transfer_Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED)
    result = exchange(server, payload)
    assert result.closed_by_server
    assert result.statuses == [200, 400], result.raw[:600]
    assert result.responses[0].body == b""
    assert b"SMUGGLED" not in result.raw


def test_cl_te_split_across_writes_is_still_rejected(server: int) -> None:
    """The smuggled bytes arrive in a later segment: the reject happens on the head alone."""
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
    with socket.create_connection((HOST, server), timeout=EXCHANGE_TIMEOUT) as sock:
        sock.sendall(head)
        time.sleep(0.2)  # not a timing assertion: only forces a separate segment
        try:
            sock.sendall(b"0\r\n\r\n" + SMUGGLED)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server already answered and closed: what we want
        data = bytearray()
        deadline = time.monotonic() + EXCHANGE_TIMEOUT
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    responses, _ = split_responses(bytes(data), eof=True)
    assert [r.status for r in responses] == [400], bytes(data)[:600]


# --------------------------------------------------------------------------
# Accepted inputs: framed exactly as sent, one response per request.
# --------------------------------------------------------------------------

ACCEPTED: List[Tuple[str, bytes, List[int], List[Optional[bytes]]]] = [
    # (id, payload, statuses, bodies) -- payloads end with Connection: close so the exchange ends at EOF.
    ("te_uppercase_chunked_is_chunked",
     post(b"Transfer-Encoding: CHUNKED\r\nConnection: close\r\n", b"3\r\nabc\r\n0\r\n\r\n"), [200], [b"abc"]),
    ("te_mixed_case_chunked_is_chunked",
     post(b"transfer-encoding: ChUnKeD\r\nConnection: close\r\n", b"3\r\nabc\r\n0\r\n\r\n"), [200], [b"abc"]),
    ("te_tab_ows_around_value",
     post(b"Transfer-Encoding:\tchunked\t\r\nConnection: close\r\n", b"3\r\nabc\r\n0\r\n\r\n"), [200], [b"abc"]),
    ("te_no_ows", post(b"Transfer-Encoding:chunked\r\nConnection: close\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
     [200], [b"abc"]),
    ("chunk_body_hides_request_not_answered",
     post(b"Transfer-Encoding: chunked\r\nConnection: close\r\n",
          b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"), [200], [SMUGGLED]),
    ("cl_body_hides_request_not_answered",
     post(b"Content-Length: %d\r\nConnection: close\r\n" % len(SMUGGLED), SMUGGLED), [200], [SMUGGLED]),
    ("chunk_extensions_ignored",
     post(b"Transfer-Encoding: chunked\r\nConnection: close\r\n", b"3;name=value;x=\"q\"\r\nabc\r\n0;e\r\n\r\n"),
     [200], [b"abc"]),
    ("chunk_size_uppercase_hex_and_leading_zeros",
     post(b"Transfer-Encoding: chunked\r\nConnection: close\r\n", b"000A\r\n0123456789\r\n0\r\n\r\n"),
     [200], [b"0123456789"]),
    ("chunk_trailers_are_consumed",
     post(b"Transfer-Encoding: chunked\r\nConnection: close\r\n", b"3\r\nabc\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n"),
     [200], [b"abc"]),
    ("cl_name_any_case_still_frames_body",
     post(b"cOnTeNt-LeNgTh: %d\r\n" % len(SMUGGLED), SMUGGLED)
     + b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", [200, 200], [SMUGGLED, b"B"]),
    ("cl_many_leading_zeros", post(b"Content-Length: 0000000000000000000000003\r\nConnection: close\r\n", b"abc"),
     [200], [b"abc"]),
    ("cl_in_chunked_trailer_ignored",
     post(b"Transfer-Encoding: chunked\r\nConnection: close\r\n", b"3\r\nabc\r\n0\r\nContent-Length: 40\r\n\r\n"),
     [200], [b"abc"]),
    ("cl_leading_zeros", post(b"Content-Length: 003\r\nConnection: close\r\n", b"abc"), [200], [b"abc"]),
    ("cl_ows_trimmed", post(b"Content-Length:  3 \r\nConnection: close\r\n", b"abc"), [200], [b"abc"]),
    ("cl_zero_then_pipelined", post(b"Content-Length: 0\r\n", b"")
     + b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", [200, 200], [b"", b"B"]),
    ("absolute_form_target", b"GET http://t/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", [200], [b"OK"]),
    ("absolute_form_https_with_query",
     b"GET https://t:8443/health?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", [200], [b"OK"]),
    ("http10_without_host", b"GET /health HTTP/1.0\r\n\r\n", [200], [b"OK"]),
    ("leading_empty_lines_skipped", b"\r\n\r\nGET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
     [200], [b"OK"]),
    ("obs_text_in_header_value",
     b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: caf\xc3\xa9\r\nConnection: close\r\n\r\n", [200], [b"OK"]),
    # A body on a route that ignores it is still consumed as a body, never parsed as a request.
    ("cl_body_on_static_get_consumed",
     b"GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED
     + b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", [200, 200], [b"OK", b"B"]),
    ("chunked_body_on_static_get_consumed",
     b"GET /health HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
     + b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"
     + b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", [200, 200], [b"OK", b"B"]),
    ("cl_body_on_dynamic_get_consumed",
     b"GET /users/7 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED
     + b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", [200, 200], [None, b"B"]),
    ("cl_body_on_unknown_route_consumed",
     b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED
     + b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", [404, 200], [None, b"B"]),
    ("chunked_body_on_unknown_route_consumed",
     b"POST /nowhere HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
     + b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"
     + b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", [404, 200], [None, b"B"]),
    ("http10_keep_alive_then_close",
     b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n", [200, 200],
     [b"OK", b"B"]),
    ("http10_without_keep_alive_ends_connection",
     b"GET /health HTTP/1.0\r\n\r\n" + SMUGGLED, [200], [b"OK"]),
    ("connection_close_ends_connection",
     b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" + SMUGGLED, [200], [b"OK"]),
    ("connection_close_among_tokens_any_case",
     b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: Upgrade-Not, CLOSE\r\n\r\n" + SMUGGLED, [200], [b"OK"]),
    # Connection tokens (RFC 9110 7.6.1): a list, empty elements ignored, any case, any field.
    ("connection_close_after_empty_element",
     b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: ,close\r\n\r\n" + SMUGGLED, [200], [b"OK"]),
    ("connection_close_wins_over_keep_alive",
     b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: keep-alive,,close\r\n\r\n" + SMUGGLED, [200], [b"OK"]),
    ("connection_close_with_tab_ows",
     b"GET /health HTTP/1.1\r\nHost: t\r\nConnection:\tclose\t\r\n\r\n" + SMUGGLED, [200], [b"OK"]),
    ("connection_close_in_second_field",
     b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: foo\r\nConnection: close\r\n\r\n" + SMUGGLED,
     [200], [b"OK"]),
    ("connection_closex_is_not_close",
     b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: closex\r\n\r\n"
     b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", [200, 200], [b"OK", b"B"]),
    ("pipelined_three_answered_in_order",
     b"GET /health HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n"
     b"GET /users/7 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", [200, 200, 200], [b"OK", b"B", None]),
]


@pytest.mark.parametrize("payload,statuses,bodies", [pytest.param(p, s, b, id=i) for i, p, s, b in ACCEPTED])
def test_unusual_but_valid_request_is_framed_exactly(server: int, payload: bytes, statuses: List[int],
                                                     bodies: List[Optional[bytes]]) -> None:
    result = exchange(server, payload)
    assert result.closed_by_server, f"server did not close after Connection: close: {result.raw[:300]!r}"
    assert result.statuses == statuses, result.raw[:800]
    for got, want in zip(result.responses, bodies):
        if want is not None:
            assert got.body == want
    assert b"SMUGGLED" not in result.raw


def test_smuggling_prefix_in_cl_body_is_not_a_new_request(server: int) -> None:
    """A body whose bytes look like a request head stays a body on keep-alive."""
    body = SMUGGLED
    payload = (post(b"Content-Length: %d\r\n" % len(body), body)
               + b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    result = exchange(server, payload)
    assert result.statuses == [200, 200]
    assert [r.body for r in result.responses] == [SMUGGLED, b"B"]


def test_oversized_upload_still_gets_its_413_before_close(server: int) -> None:
    """The server rejects on the head while the client keeps sending: the 413 is not lost to a reset."""
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (8 * MAX_BODY)
    with socket.create_connection((HOST, server), timeout=EXCHANGE_TIMEOUT) as sock:
        sock.sendall(head)
        sent = 0
        try:
            for _ in range(64):  # bounded: at most 4 MiB more
                sent += sock.send(b"x" * 65536)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        data = bytearray()
        deadline = time.monotonic() + EXCHANGE_TIMEOUT
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
    responses, _ = split_responses(bytes(data), eof=True)
    assert [r.status for r in responses] == [413], f"after {sent} body bytes: {bytes(data)[:300]!r}"


def test_expect_100_continue_over_limit_gets_413_without_100(server: int) -> None:
    head = (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
            % (MAX_BODY + 1))
    result = exchange(server, head)
    assert result.closed_by_server
    assert [r.status for r in result.interim] == []
    assert result.statuses == [413]


def test_expect_100_continue_gets_interim_then_one_final(server: int) -> None:
    head = (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\n")
    with socket.create_connection((HOST, server), timeout=EXCHANGE_TIMEOUT) as sock:
        sock.sendall(head)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 100 "), first[:200]
        sock.sendall(b"abc")
        data = bytearray(first)
        deadline = time.monotonic() + EXCHANGE_TIMEOUT
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finals, interim = split_responses(bytes(data), eof=True)
    assert [r.status for r in interim] == [100]
    assert [r.status for r in finals] == [200]
    assert finals[0].body == b"abc"


def test_half_close_mid_head_gets_no_response_and_close(server: int) -> None:
    """A client that stops mid-head and shuts its side: no answer needed, no hang."""
    result = exchange(server, b"GET /health HTTP/1.1\r\nHost: t\r\n", shut_write=True)
    assert result.closed_by_server
    assert result.statuses in ([], [400])
    assert_still_serving(server)


@pytest.mark.parametrize("route", ["value", "name", "ctype", "tuple"])
@pytest.mark.parametrize("injection", ["a%0D%0AInjected:%201", "a%0AInjected:%201", "a%0DInjected:%201",
                                       "a%00b"], ids=["crlf", "lf", "cr", "nul"])
def test_handler_header_with_cr_lf_cannot_split_the_response(server: int, route: str, injection: str) -> None:
    """Response splitting: a header built from request data with CR/LF/NUL gives a 500, never a new header
    or a second response; the connection goes on serving."""
    payload = (b"GET /split/%s?v=%s HTTP/1.1\r\nHost: t\r\n\r\n" % (route.encode(), injection.encode())
               + b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    result = exchange(server, payload)
    assert result.statuses == [500, 200], result.raw[:600]
    assert b"Injected" not in result.raw
    assert result.responses[1].body == b"B"


def test_split_responses_rejects_unexplained_bytes() -> None:
    """The oracle itself: trailing bytes after a response are caught, not ignored."""
    one = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    assert [r.status for r in split_responses(one, eof=True)[0]] == [400]
    assert len(split_responses(one + one, eof=True)[0]) == 2
    with pytest.raises(WireError):
        split_responses(one + b"HTTP/1.1 200 OK\r\n", eof=True)
    with pytest.raises(WireError):
        split_responses(one + b"x", eof=True)
