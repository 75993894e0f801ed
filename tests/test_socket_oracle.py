"""Differential test: the native backends and the pure-Python reference must turn
the same byte stream, cut into the same TCP segments, into the same requests and
the same final status. Any difference is a bug in one of them (uvloop-style)."""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SocketPair, wait_readable

import hypersonic.socket as hs

METHODS = [b"GET", b"POST", b"HEAD", b"PUT", b"OPTIONS", b"DELETE", b"G@T", b"get", b"X" * 33]
TARGETS = [b"/", b"/a/b?c=d", b"*", b"http://h.example/p?q", b"https://h:1", b"//x", b"a", b"/%00", b"/\xff",
           b"/" + b"t" * 9000]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 "]
HEADERS = [
    b"Host: h", b"Host: h", b"Host: bad host", b"Connection: close", b"Connection: Keep-Alive",
    b"Connection: upgrade, CLOSE", b"Content-Length: 3", b"Content-Length: 0", b"Content-Length: 03",
    b"Content-Length: x", b"Content-Length: 99999999999", b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: chunked, gzip", b"Expect: 100-continue",
    b"X-Empty:", b"X-Sp:   v  ", b"Bad Name: v", b"X-Nul: a\x00b", b" folded", b"X-Obs: \xe9",
]
BODIES = [b"", b"abc", b"3\r\nabc\r\n0\r\n\r\n", b"1;e=v\r\na\r\n0\r\nT: v\r\n\r\n", b"zz\r\n", b"ab"]


@st.composite
def request_bytes(draw) -> bytes:
    line = b" ".join([draw(st.sampled_from(METHODS)), draw(st.sampled_from(TARGETS)), draw(st.sampled_from(VERSIONS))])
    headers = draw(st.lists(st.sampled_from(HEADERS), max_size=5))
    eol = draw(st.sampled_from([b"\r\n"] * 8 + [b"\n"]))
    data = draw(st.sampled_from([b"", b"\r\n"])) + line + eol + b"".join(h + eol for h in headers) + eol
    return data + draw(st.sampled_from(BODIES))


@st.composite
def streams(draw):
    data = b"".join(draw(st.lists(request_bytes(), min_size=1, max_size=3)))
    if draw(st.booleans()):  # mutate a few bytes
        raw = bytearray(data)
        for _ in range(draw(st.integers(1, 3))):
            pos = draw(st.integers(0, len(raw)))
            op = draw(st.sampled_from(["insert", "delete", "replace"]))
            byte = draw(st.integers(0, 255))
            if op == "insert":
                raw.insert(pos, byte)
            elif raw and pos < len(raw):
                if op == "delete":
                    del raw[pos]
                else:
                    raw[pos] = byte
        data = bytes(raw)
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=4, unique=True)))
    segments, last = [], 0
    for cut in cuts + [len(data)]:
        if cut > last:
            segments.append(data[last:cut])
            last = cut
    return segments


def run_stream(api, segments):
    """Feed segments to a fresh connection; (requests without fd, final status)."""
    pair = SocketPair(api)
    out = []
    try:
        for segment in segments:
            pair.client.sendall(segment)
            assert wait_readable(pair.fd)
            for _ in range(20):  # bounded drain
                req = api.http_recv(pair.fd)
                if req is None:
                    break
                out.append(tuple(req[:4]))
        pair.client.shutdown(socket.SHUT_WR)
        assert wait_readable(pair.fd)
        for _ in range(20):
            req = api.http_recv(pair.fd)
            if req is None:
                if api.http_recv_status(pair.fd) != api.RECV_PENDING:
                    break
                assert wait_readable(pair.fd)
                continue
            out.append(tuple(req[:4]))
        return out, api.http_recv_status(pair.fd)
    finally:
        pair.close()


@pytest.fixture(scope="module")
def all_apis(tmp_path_factory):
    cache = tmp_path_factory.mktemp("oracle_cache")
    return {name: hs.load(name, cache_dir=cache) for name in hs.available_backends()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(segments=streams())
def test_native_backends_agree_with_the_reference(all_apis, segments):
    expected = run_stream(all_apis["reference"], segments)
    for name, api in all_apis.items():
        if name != "reference":
            assert run_stream(api, segments) == expected, name


@pytest.mark.parametrize(
    "segments",
    [
        [b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"],
        [b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab", b"c\r\n0\r\n\r\nGET /x HTTP/1.0\r\n\r\n"],
        [b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"],
        [b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"],
        [b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab"],
    ],
)
def test_known_streams_agree_with_the_reference(all_apis, segments):
    expected = run_stream(all_apis["reference"], segments)
    assert expected[1] in (hs.RECV_CLOSED, 400)
    for name, api in all_apis.items():
        assert run_stream(api, segments) == expected, name
