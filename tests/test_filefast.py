"""Baked files of static mounts answered by the C loop without a Python call (hs_filefast.c).

Every check runs against real servers over TCP: the C loop (whose counters
prove which requests reached Python) and the pure-Python server (the oracle:
it always calls the mount), whose bytes must be the same except Date.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _http_wire import WireResponse, connect, get, request
from _server_util import ServerProcess, start_app

from hypersonic import Hypersonic
from hypersonic._filefast import native_entries
from hypersonic._static import StaticMount

#: Bound on waiting for a changed file to be seen (baked files are checked once a second).
CHANGE_WAIT_S = 10.0

APP = """
from hypersonic import Hypersonic

app = Hypersonic()

@app.get("/stats")
def stats(req):
    return app.stats()

@app.get("/s/exact.txt")
def exact():
    return "the app's route"

app.static("/s", {root!r}, max_age=60)
app.static("/noetag", {root!r}, etag=False, gzip=False)
"""

HOOKED_APP = """
from hypersonic import Hypersonic

app = Hypersonic()
calls = []

@app.get("/stats")
def stats(req):
    return app.stats()

@app.before
def count(req):
    calls.append(1)
    return None

@app.get("/calls")
def n(req):
    return str(len(calls))

app.static("/s", {root!r})
"""

COMPRESS_APP = """
from hypersonic import Hypersonic

app = Hypersonic()
app.compress()

@app.get("/stats")
def stats(req):
    return app.stats()

app.static("/s", {root!r}, gzip=False, etag=False)  # no ETag: app.compress() may encode it
"""

_DATE_RE = re.compile(rb"\r\nDate: [^\r]*\r\n")


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "hello.txt").write_bytes(b"hello, fast\n")
    (root / "exact.txt").write_bytes(b"the file, not the route\n")
    (root / "index.html").write_bytes(b"<h1>index</h1>\n")
    (root / "sub" / "index.html").write_bytes(b"<h1>sub</h1>\n")
    (root / "app.css").write_bytes(b"body { color: red; margin: 0 auto; }\n" * 64)
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (root / "a%41.txt").write_bytes(b"percent\n")
    (root / "changing.txt").write_bytes(b"version 0\n")
    (root / "gone.txt").write_bytes(b"soon gone\n")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tree(tmp_path_factory.mktemp("filefast") / "public")


@pytest.fixture(scope="module")
def servers(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[ServerProcess, ServerProcess]]:
    """(the C loop, the pure-Python server), both serving APP."""
    source = APP.format(root=str(tree))
    with start_app(source, tmp_path_factory.mktemp("ff_native"), env={"HYPERSONIC_JIT": "1"}) as native:
        with start_app(source, tmp_path_factory.mktemp("ff_python"), env={"HYPERSONIC_JIT": "0"}) as python:
            yield native, python


def _stats(port: int) -> dict:
    return json.loads(request(port, get("/stats")).body)


def _raw(port: int, raw: bytes, head: bool = False) -> bytes:
    return _DATE_RE.sub(b"\r\nDate: -\r\n", request(port, raw, head_request=head).raw)


def _etag(port: int, target: str, extra: str = "") -> str:
    value = request(port, get(target, extra)).header("etag")
    assert value is not None
    return value


def test_baked_files_are_answered_without_python(servers: Tuple[ServerProcess, ServerProcess]) -> None:
    native, _ = servers
    port = native.port
    etag = _etag(port, "/s/hello.txt")
    gz_etag = _etag(port, "/s/app.css", "Accept-Encoding: gzip\r\n")
    assert gz_etag.endswith('-gz"')
    before = _stats(port)
    sock, reader = connect(port)
    cases: List[Tuple[bytes, bool, int]] = [
        (get("/s/hello.txt"), False, 200),
        (get("/s/hello.txt", f"If-None-Match: {etag}\r\n"), False, 304),
        (get("/s/hello.txt", f"If-None-Match: W/{etag}\r\n"), False, 304),
        (get("/s/hello.txt", 'If-None-Match: "other"\r\n'), False, 200),
        (get("/s/hello.txt", "If-None-Match: *\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n"), False, 304),
        (get("/s/app.css", "Accept-Encoding: gzip\r\n"), False, 200),
        (get("/s/app.css", f"Accept-Encoding: gzip\r\nIf-None-Match: {gz_etag}\r\n"), False, 304),
        (get("/s/app.css", "Accept-Encoding: gzip;q=0\r\n"), False, 200),
        (get("/s/hello.txt", method="HEAD"), True, 200),
        (get("/s/"), False, 200),
        (get("/s/sub/"), False, 200),
        (get("/noetag/hello.txt", f"If-None-Match: {etag}\r\n"), False, 200),
    ]
    with sock:
        answers = []
        for raw, head, status in cases:
            sock.sendall(raw)
            answers.append(reader.response(head_request=head))
            assert answers[-1].status == status, raw
    after = _stats(port)
    assert after["python_calls"] - before["python_calls"] == 1  # the second /stats only
    assert after["static_responses"] - before["static_responses"] == len(cases)
    assert answers[0].body == b"hello, fast\n"
    assert answers[5].header("content-encoding") == "gzip"
    assert gzip.decompress(answers[5].body) == b"body { color: red; margin: 0 auto; }\n" * 64
    assert answers[7].header("content-encoding") is None
    assert answers[8].header("content-length") == str(len(b"hello, fast\n")) and answers[8].body == b""
    assert answers[9].body == b"<h1>index</h1>\n" and answers[10].body == b"<h1>sub</h1>\n"


@pytest.mark.parametrize("raw,head", [
    (get("/s/hello.txt", "Range: bytes=0-4\r\n"), False),
    (get("/s/hello.txt", "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n"), False),
    (get("/s/hello.txt", "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n"), False),
    (get("/s/hello.txt", "Range: bytes=0-4\r\nIf-Range: \"nope\"\r\n"), False),
    (get("/s/hello.txt", "If-Match: \"x\"\r\n"), False),
    (get("/s/hello.txt", "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n"), False),
    (get("/s/hello.txt", "If-None-Match: \"a\"\r\nIf-None-Match: *\r\n"), False),
    (get("/s/a%41.txt"), False),
    (get("/s/%68ello.txt"), False),
    (get("/s/sub"), False),
])
def test_unusual_requests_go_to_the_mount(servers: Tuple[ServerProcess, ServerProcess], raw: bytes,
                                         head: bool) -> None:
    native, python = servers
    before = _stats(native.port)
    answer = _raw(native.port, raw, head)
    after = _stats(native.port)
    assert after["python_calls"] - before["python_calls"] == 2  # the request and the second /stats
    assert answer == _raw(python.port, raw, head)


@pytest.mark.parametrize("target", ["/s/hello.txt", "/s/hello.txt?v=1", "/s/app.css", "/s/image.png", "/s/",
                                    "/s/sub/", "/noetag/app.css", "/s/exact.txt"])
@pytest.mark.parametrize("extra", ["", "Accept-Encoding: gzip\r\n", "Accept-Encoding: gzip;q=0, *\r\n",
                                   "Connection: close\r\n", "Accept-Encoding: x-gzip\r\nIf-None-Match: *\r\n"])
@pytest.mark.parametrize("method,version", [("GET", "1.1"), ("HEAD", "1.1"), ("GET", "1.0")])
def test_same_bytes_as_the_python_server(servers: Tuple[ServerProcess, ServerProcess], target: str, extra: str,
                                         method: str, version: str) -> None:
    native, python = servers
    raw = get(target, extra, method, version)
    head = method == "HEAD"
    assert _raw(native.port, raw, head) == _raw(python.port, raw, head)


def test_same_304_bytes_as_the_python_server(servers: Tuple[ServerProcess, ServerProcess]) -> None:
    native, python = servers
    for target, extra in (("/s/hello.txt", ""), ("/s/app.css", "Accept-Encoding: gzip\r\n"),
                          ("/s/app.css", "")):
        etag = _etag(python.port, target, extra)
        raw = get(target, extra + f"If-None-Match: {etag}\r\n")
        answer = _raw(native.port, raw)
        assert answer.startswith(b"HTTP/1.1 304 ") and b"ETag: " + etag.encode() in answer
        assert answer == _raw(python.port, raw)


def test_the_apps_route_wins_over_a_baked_file(servers: Tuple[ServerProcess, ServerProcess]) -> None:
    native, _ = servers
    assert request(native.port, get("/s/exact.txt")).body == b"the app's route"


def test_pipelined_fast_and_fallback_requests_keep_their_order(servers: Tuple[ServerProcess, ServerProcess]
                                                              ) -> None:
    native, python = servers
    etag = _etag(python.port, "/s/hello.txt")
    batch = [
        (get("/s/hello.txt"), False),
        (get("/s/hello.txt", "Range: bytes=1-3\r\n"), False),
        (get("/s/hello.txt", f"If-None-Match: {etag}\r\n"), False),
        (get("/s/app.css", "Accept-Encoding: gzip\r\n", "HEAD"), True),
        (get("/s/hello.txt", "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n"), False),
        (get("/s/app.css", "Accept-Encoding: gzip\r\n"), False),
        (get("/s/sub"), False),
        (get("/s/image.png"), False),
    ]
    results = []
    for server in (native, python):
        sock, reader = connect(server.port)
        with sock:
            sock.sendall(b"".join(raw for raw, _ in batch))
            results.append([_DATE_RE.sub(b"\r\nDate: -\r\n", reader.response(head).raw) for _, head in batch])
    assert results[0] == results[1]
    assert [int(r.split(b" ")[1]) for r in results[0]] == [200, 206, 304, 200, 304, 200, 301, 200]


def _poll(port: int, target: str, done) -> WireResponse:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + CHANGE_WAIT_S
    resp = request(port, get(target))
    while not done(resp) and time.monotonic() < deadline:
        time.sleep(0.1)
        resp = request(port, get(target))
    return resp


def test_a_file_changed_on_disk_is_served_new_within_a_bounded_wait(servers: Tuple[ServerProcess, ServerProcess],
                                                                    tree: Path) -> None:
    native, _ = servers
    assert request(native.port, get("/s/changing.txt")).body == b"version 0\n"
    new = f"version {time.time_ns()} (longer)\n".encode()
    (tree / "changing.txt").write_bytes(new)
    info = (tree / "changing.txt").stat()
    resp = _poll(native.port, "/s/changing.txt", lambda r: r.body == new)
    assert resp.body == new
    assert resp.header("etag") == f'"{info.st_size:x}-{info.st_mtime_ns:x}"'
    before = _stats(native.port)
    assert request(native.port, get("/s/changing.txt")).body == new
    assert _stats(native.port)["python_calls"] - before["python_calls"] == 2  # no longer from C
    (tree / "gone.txt").unlink()
    assert _poll(native.port, "/s/gone.txt", lambda r: r.status == 404).status == 404


# Pieces If-None-Match values are built from: the entity-tags in play, their parts, separators, whitespace
# (0x85 and 0xA0 are whitespace to Python's str.strip on the latin-1 text) and other bytes.
_INM_PIECES = ['"', "W/", "w/", ",", ", ", " ", "\t", "*", "\xa0", "\x85", "x", "-gz", "abc", '""']


@pytest.fixture(scope="module")
def etags(servers: Tuple[ServerProcess, ServerProcess]) -> List[str]:
    _, python = servers
    return [_etag(python.port, "/s/app.css"), _etag(python.port, "/s/app.css", "Accept-Encoding: gzip\r\n")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_if_none_match_fuzz_against_the_python_server(servers: Tuple[ServerProcess, ServerProcess],
                                                     etags: List[str], data: st.DataObject) -> None:
    native, python = servers
    tags = st.sampled_from(etags + [e[1:-1] for e in etags] + [e[:-1] for e in etags] + ['"x"', "*", ""])
    space = st.text(st.sampled_from(" \t\xa0\x85"), max_size=2)
    member = st.tuples(space, st.sampled_from(["", "W/", "w/", "W/ "]), tags, space).map("".join)
    structured = st.lists(member, min_size=1, max_size=4).map(",".join)
    pieces = st.sampled_from(_INM_PIECES + etags + [e[1:-1] for e in etags] + [e[:-1] for e in etags])
    scrambled = st.lists(pieces, min_size=1, max_size=8).map("".join)
    value = data.draw(st.one_of(structured, scrambled), label="If-None-Match").strip(" \t")
    accept = data.draw(st.sampled_from(["", "Accept-Encoding: gzip\r\n", "Accept-Encoding: identity\r\n"]))
    raw = get("/s/app.css", accept).replace(b"\r\n\r\n", b"\r\nIf-None-Match: " + value.encode("latin-1") + b"\r\n\r\n")
    assert _raw(native.port, raw) == _raw(python.port, raw)


def test_a_mount_with_hooks_still_calls_python(tree: Path, tmp_path: Path) -> None:
    with start_app(HOOKED_APP.format(root=str(tree)), tmp_path, env={"HYPERSONIC_JIT": "1"}) as server:
        before = int(request(server.port, get("/calls")).body)
        assert request(server.port, get("/s/hello.txt")).body == b"hello, fast\n"
        assert int(request(server.port, get("/calls")).body) - before == 2  # the file and /calls


def test_files_compress_would_change_are_left_to_python(tree: Path, tmp_path: Path) -> None:
    with start_app(COMPRESS_APP.format(root=str(tree)), tmp_path, env={"HYPERSONIC_JIT": "1"}) as server:
        before = _stats(server.port)
        css = request(server.port, get("/s/app.css", "Accept-Encoding: gzip\r\n"))  # compressed by app.compress()
        assert css.header("content-encoding") == "gzip"
        assert request(server.port, get("/s/image.png")).status == 200  # not compressible: from C
        assert _stats(server.port)["python_calls"] - before["python_calls"] == 2  # app.css and /stats


def test_native_entries_checks_its_arguments(tree: Path) -> None:
    mount = StaticMount("/s", str(tree), max_age=None, index="index.html", etag=True, gzip=True, dotfiles=False)
    mount.prepare(())
    with pytest.raises(TypeError):
        native_entries([(object(), 0)], ())  # type: ignore[list-item]
    with pytest.raises(ValueError):
        native_entries([(mount, -1)], ())
    entries = native_entries([(mount, 3)], ())
    paths = {e[0] for e in entries}
    assert {b"/s/hello.txt", b"/s/", b"/s/sub/", b"/s/sub/index.html"} <= paths
    assert not any(b"%" in p for p in paths)
    assert all(e[1] == 3 for e in entries)


def test_configure_rejects_a_malformed_table() -> None:
    app = Hypersonic()
    app.get("/x", lambda req: "x")
    app.compile()
    module = app._module
    assert module is not None
    if module.backend() == "python":
        pytest.skip("the pure-Python server ignores the table")
    config = dict(app._configuration)
    for bad, exc in (("nope", TypeError), ((("x",),), TypeError),
                     (((b"/p", 99, b"/f", 0, 0, 0, ((b"", 0, 0, b"", 0, 0, b""),)),), ValueError)):
        config["static_files"] = bad
        with pytest.raises(exc):
            module.configure(**config)
