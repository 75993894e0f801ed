"""Static files (app.static): routing of the mount, validators and conditionals,
ranges, gzip variants, directories, path traversal, and file bodies streamed
without loading them into memory -- over real TCP, with raw sockets (which do
not normalise paths), http.client and curl, against both the C server and the
pure-Python server (HYPERSONIC_JIT=0)."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, List

import pytest

from _http_wire import HOST, connect, get, request
from _server_util import ServerProcess, start_app
from hypersonic._httpdate import http_date
from hypersonic._static import (BAKE_MAX_FILE, content_type_for, etag_matches, parse_http_date, parse_range)

#: Size of the file streamed to a slow reader (the server must not hold it in memory).
HUGE_SIZE = 64 * 1024 * 1024
#: Bound on any wait for the server to release descriptors (seconds; not a timing assertion).
FD_WAIT_S = 10.0

APP = """
from hypersonic import FileResponse, Hypersonic

app = Hypersonic()

@app.get("/static/exact")
def exact():
    return "exact route"

@app.get("/download")
def download(req):
    return FileResponse({root!r} + "/medium.bin", headers={{"X-Kind": "file"}})

app.static("/static/", {root!r}, max_age=60)
app.static("/nocache", {root!r}, index=None, gzip=False, etag=False)
app.static("/static/nested", {root!r} + "/sub")
"""


def _tree(base: Path) -> Path:
    root = base / "public"
    (root / "sub").mkdir(parents=True)
    (root / "noindex").mkdir()
    (root / ".git").mkdir()
    (root / "hello.txt").write_bytes(b"hello, static\n")
    (root / "changing.txt").write_bytes(b"version 0\n")
    (root / "removed.txt").write_bytes(b"soon gone\n")
    (root / "index.html").write_bytes(b"<h1>root index</h1>\n")
    (root / "sub" / "index.html").write_bytes(b"<h1>sub index</h1>\n")
    (root / "noindex" / "x.txt").write_bytes(b"x\n")
    (root / ".hidden.txt").write_bytes(b"hidden\n")
    (root / ".git" / "config").write_bytes(b"[core]\n")
    (root / "a b.txt").write_bytes(b"space\n")
    (root / "app.css").write_bytes(b"body { color: red; margin: 0 auto; }\n" * 64)
    (root / "pre.js").write_bytes(b"console.log('identity');\n" * 40)
    (root / "pre.js.gz").write_bytes(gzip.compress(b"console.log('from the .gz sibling');\n"))
    (root / "stale.js").write_bytes(b"console.log('stale identity');\n" * 40)
    (root / "stale.js.gz").write_bytes(gzip.compress(b"console.log('stale sibling');\n"))
    old = time.time() - 3600
    os.utime(root / "stale.js.gz", (old, old))
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (root / "data.unknownext").write_bytes(b"\x00\x01\x02")
    (root / "medium.bin").write_bytes(os.urandom(BAKE_MAX_FILE * 5 + 123))
    with open(root / "huge.bin", "wb") as f:
        chunk = os.urandom(1024 * 1024)
        for i in range(HUGE_SIZE // len(chunk)):
            f.write(bytes([i & 0xFF]) + chunk[1:])
    (root / "link_in.txt").symlink_to(root / "hello.txt")
    (root / "etc").symlink_to("/etc")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"SECRET\n")
    (base / "secret.txt").write_bytes(b"SECRET\n")
    (root / "link_out.txt").symlink_to(outside / "secret.txt")
    (root / "dirlink").symlink_to(outside)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tree(tmp_path_factory.mktemp("static"))


@pytest.fixture(scope="module", params=["native", "native-poll", "python"])
def server(request: pytest.FixtureRequest, tree: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    """The app above, served by the C loop (native: epoll/kqueue; native-poll: poll(2)) or the
    pure-Python server."""
    env = {"HYPERSONIC_JIT": "0" if request.param == "python" else "1"}
    if request.param == "native-poll":
        env["HYPERSONIC_EVENT_BACKEND"] = "poll"
    app_dir = tmp_path_factory.mktemp(f"static_app_{request.param}")
    with start_app(APP.format(root=str(tree)), app_dir, env=env) as proc:
        yield proc


def _get(server: ServerProcess, target: str, extra: str = "", method: str = "GET"):
    return request(server.port, get(target, extra, method), head_request=method == "HEAD")


# -- unit: the parsing helpers ------------------------------------------------------------


def test_parse_range_forms() -> None:
    assert parse_range("bytes=0-4", 10) == (0, 4)
    assert parse_range("bytes=5-", 10) == (5, 9)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=-30", 10) == (0, 9)
    assert parse_range("bytes=3-100", 10) == (3, 9)
    assert parse_range("bytes=10-", 10) == "unsatisfiable"
    assert parse_range("bytes=-0", 10) == "unsatisfiable"
    assert parse_range("bytes=0-0", 0) == "unsatisfiable"
    assert parse_range("bytes=0-1,3-4", 10) is None  # several ranges: whole representation
    assert parse_range("bytes=5-2", 10) is None
    assert parse_range("items=0-1", 10) is None
    assert parse_range("bytes=x-1", 10) is None


def test_etag_weak_comparison() -> None:
    assert etag_matches('"a"', '"a"')
    assert etag_matches('W/"a"', '"a"')
    assert etag_matches('"x", W/"a"', '"a"')
    assert etag_matches("*", '"a"')
    assert not etag_matches('"b"', '"a"')
    assert not etag_matches('"a-gz"', '"a"')


def test_http_date_three_formats() -> None:
    expected = 784111777
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == expected
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == expected
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == expected
    assert parse_http_date("yesterday") is None
    assert parse_http_date(http_date(expected)) == expected


def test_content_types_come_from_the_standard_table() -> None:
    assert content_type_for("a.css") == "text/css; charset=utf-8"
    assert content_type_for("a.html") == "text/html; charset=utf-8"
    assert content_type_for("a.js") == "text/javascript; charset=utf-8"  # RFC 9239
    assert content_type_for("a.woff2") == "font/woff2"
    assert content_type_for("a.png") == "image/png"
    assert content_type_for("a.json") == "application/json; charset=utf-8"
    assert content_type_for("a.css.gz") == "application/gzip"
    assert content_type_for("a.unknownext") == "application/octet-stream"


def test_static_arguments_are_checked(tmp_path: Path) -> None:
    from hypersonic import Hypersonic

    app = Hypersonic()
    with pytest.raises(TypeError, match="prefix"):
        app.static(3, tmp_path)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="directory"):
        app.static("/s", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_age"):
        app.static("/s", tmp_path, max_age=-1)
    with pytest.raises(TypeError, match="max_age"):
        app.static("/s", tmp_path, max_age="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="index"):
        app.static("/s", tmp_path, index="a/b")
    with pytest.raises(TypeError, match="gzip"):
        app.static("/s", tmp_path, gzip=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="parameters"):
        app.static("/s/:x", tmp_path)
    app.static("/s", tmp_path)
    with pytest.raises(ValueError, match="duplicate"):
        app.static("/s/", tmp_path)
    missing = Hypersonic()
    missing.static("/m", tmp_path / "nope")
    with pytest.raises(ValueError, match="does not exist"):
        missing.compile()


# -- serving ------------------------------------------------------------------------------


def test_small_file_has_validators_and_cache_headers(server: ServerProcess, tree: Path) -> None:
    resp = _get(server, "/static/hello.txt")
    info = (tree / "hello.txt").stat()
    assert resp.status == 200
    assert resp.body == b"hello, static\n"
    assert resp.header("content-type") == "text/plain; charset=utf-8"
    assert resp.header("cache-control") == "public, max-age=60"
    assert resp.header("etag") == f'"{info.st_size:x}-{info.st_mtime_ns:x}"'
    assert resp.header("last-modified") == http_date(info.st_mtime)
    assert resp.header("accept-ranges") == "bytes"
    assert resp.header("x-content-type-options") == "nosniff"  # security headers too
    assert resp.header("vary") is None  # no gzip variant of a tiny text file


def test_mount_options_no_cache_no_etag(server: ServerProcess) -> None:
    resp = _get(server, "/nocache/hello.txt")
    assert resp.status == 200 and resp.body == b"hello, static\n"
    assert resp.header("cache-control") == "no-cache"
    assert resp.header("etag") is None
    assert _get(server, "/nocache/sub/").status == 404  # index=None: no index, no listing


def test_content_types_on_the_wire(server: ServerProcess) -> None:
    assert _get(server, "/static/app.css").header("content-type") == "text/css; charset=utf-8"
    assert _get(server, "/static/image.png").header("content-type") == "image/png"
    assert _get(server, "/static/data.unknownext").header("content-type") == "application/octet-stream"
    assert _get(server, "/static/pre.js.gz").header("content-type") == "application/gzip"


def test_large_file_is_byte_exact_over_http_client(server: ServerProcess, tree: Path) -> None:
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    try:
        for _ in range(2):  # keep-alive: the connection is reused after a file body
            conn.request("GET", "/static/medium.bin")
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200
            assert int(resp.getheader("content-length")) == len(body)
            assert hashlib.sha256(body).digest() == hashlib.sha256((tree / "medium.bin").read_bytes()).digest()
    finally:
        conn.close()


def test_head_has_length_and_no_body(server: ServerProcess, tree: Path) -> None:
    for name in ("hello.txt", "medium.bin"):
        resp = _get(server, f"/static/{name}", method="HEAD")
        assert resp.status == 200
        assert int(resp.header("content-length")) == (tree / name).stat().st_size
        assert resp.body == b""


def test_pipelined_file_bodies_stay_in_order(server: ServerProcess, tree: Path) -> None:
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(get("/static/medium.bin") + get("/static/hello.txt") + get("/static/medium.bin", "Range: bytes=0-9\r\n"))
        first, second, third = reader.response(), reader.response(), reader.response()
    medium = (tree / "medium.bin").read_bytes()
    assert first.body == medium
    assert second.body == b"hello, static\n"
    assert third.status == 206 and third.body == medium[:10]


def test_methods_other_than_get_and_head_are_405(server: ServerProcess) -> None:
    resp = _get(server, "/static/hello.txt", method="POST")
    assert resp.status == 405
    assert resp.header("allow") == "GET, HEAD, OPTIONS"
    assert _get(server, "/static/deep/er/x", method="DELETE").status == 405


def test_routes_of_the_app_win_over_the_mount(server: ServerProcess) -> None:
    assert _get(server, "/static/exact").body == b"exact route"
    assert _get(server, "/static/exact/more").status == 404  # below it: the mount, no such file


def test_the_deepest_mount_wins(server: ServerProcess) -> None:
    assert _get(server, "/static/nested/index.html").body == b"<h1>sub index</h1>\n"
    assert _get(server, "/static/nested/").body == b"<h1>sub index</h1>\n"
    assert _get(server, "/static/nested/hello.txt").status == 404  # not in the nested mount's directory


def test_static_handler_cannot_return_a_file_response(tmp_path: Path) -> None:
    from hypersonic import FileResponse, Hypersonic

    app = Hypersonic()
    app.get("/f", lambda: FileResponse(str(tmp_path)))
    with pytest.raises(TypeError, match="dynamic=True"):
        app.compile()


def test_file_response_from_a_handler(server: ServerProcess, tree: Path) -> None:
    resp = _get(server, "/download")
    assert resp.status == 200
    assert resp.header("x-kind") == "file"
    assert resp.header("content-type") == "application/octet-stream"
    assert resp.body == (tree / "medium.bin").read_bytes()


# -- conditionals ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hello.txt", "medium.bin"])
def test_if_none_match_gives_304_with_validators(server: ServerProcess, name: str) -> None:
    first = _get(server, f"/static/{name}")
    etag = first.header("etag")
    for value in (etag, f'"nope", {etag}', f"W/{etag}", "*"):
        resp = _get(server, f"/static/{name}", f"If-None-Match: {value}\r\n")
        assert resp.status == 304, value
        assert resp.body == b""
        assert resp.header("etag") == etag
        assert resp.header("cache-control") == "public, max-age=60"
        assert resp.header("content-length") is None
    assert _get(server, f"/static/{name}", 'If-None-Match: "other"\r\n').status == 200


def test_if_none_match_takes_precedence_over_if_modified_since(server: ServerProcess) -> None:
    future = http_date(time.time() + 86400)
    resp = _get(server, "/static/hello.txt", f'If-None-Match: "other"\r\nIf-Modified-Since: {future}\r\n')
    assert resp.status == 200


@pytest.mark.parametrize("name", ["hello.txt", "medium.bin"])
def test_if_modified_since(server: ServerProcess, tree: Path, name: str) -> None:
    mtime = (tree / name).stat().st_mtime
    assert _get(server, f"/static/{name}", f"If-Modified-Since: {http_date(mtime)}\r\n").status == 304
    assert _get(server, f"/static/{name}", f"If-Modified-Since: {http_date(mtime - 10)}\r\n").status == 200
    assert _get(server, f"/static/{name}", "If-Modified-Since: garbage\r\n").status == 200


# -- ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hello.txt", "medium.bin"])
def test_single_ranges_are_206(server: ServerProcess, tree: Path, name: str) -> None:
    data = (tree / name).read_bytes()
    size = len(data)
    for spec, first, last in (("0-4", 0, 4), ("5-", 5, size - 1), ("-3", size - 3, size - 1),
                              (f"2-{size + 50}", 2, size - 1)):
        resp = _get(server, f"/static/{name}", f"Range: bytes={spec}\r\n")
        assert resp.status == 206, spec
        assert resp.header("content-range") == f"bytes {first}-{last}/{size}"
        assert resp.body == data[first:last + 1]


@pytest.mark.parametrize("name", ["hello.txt", "medium.bin"])
def test_unsatisfiable_range_is_416(server: ServerProcess, tree: Path, name: str) -> None:
    size = (tree / name).stat().st_size
    resp = _get(server, f"/static/{name}", f"Range: bytes={size}-\r\n")
    assert resp.status == 416
    assert resp.header("content-range") == f"bytes */{size}"


def test_several_ranges_or_bad_if_range_give_the_whole_file(server: ServerProcess, tree: Path) -> None:
    data = (tree / "medium.bin").read_bytes()
    resp = _get(server, "/static/medium.bin", "Range: bytes=0-1,4-5\r\n")
    assert resp.status == 200 and resp.body == data
    etag = resp.header("etag")
    good = _get(server, "/static/medium.bin", f"Range: bytes=0-1\r\nIf-Range: {etag}\r\n")
    assert good.status == 206 and good.body == data[:2]
    stale = _get(server, "/static/medium.bin", 'Range: bytes=0-1\r\nIf-Range: "old"\r\n')
    assert stale.status == 200 and stale.body == data
    last_modified = resp.header("last-modified")
    by_date = _get(server, "/static/medium.bin", f"Range: bytes=0-1\r\nIf-Range: {last_modified}\r\n")
    assert by_date.status == 206


# -- gzip ----------------------------------------------------------------------------------


def test_compile_time_gzip_for_compressible_files(server: ServerProcess, tree: Path) -> None:
    plain = _get(server, "/static/app.css")
    packed = _get(server, "/static/app.css", "Accept-Encoding: gzip, br\r\n")
    assert plain.header("content-encoding") is None and plain.body == (tree / "app.css").read_bytes()
    assert plain.header("vary") == "Accept-Encoding"
    assert packed.header("content-encoding") == "gzip"
    assert packed.header("vary") == "Accept-Encoding"
    assert gzip.decompress(packed.body) == plain.body
    assert len(packed.body) < len(plain.body)
    assert packed.header("etag") != plain.header("etag")
    refused = _get(server, "/static/app.css", "Accept-Encoding: gzip;q=0, identity\r\n")
    assert refused.header("content-encoding") is None
    # The gzip variant's ETag revalidates the gzip variant only.
    assert _get(server, "/static/app.css", f"Accept-Encoding: gzip\r\nIf-None-Match: {packed.header('etag')}\r\n"
                ).status == 304
    assert _get(server, "/static/app.css", f"If-None-Match: {packed.header('etag')}\r\n").status == 200


def test_fresh_gz_sibling_is_served_and_stale_one_is_not(server: ServerProcess, tree: Path) -> None:
    fresh = _get(server, "/static/pre.js", "Accept-Encoding: gzip\r\n")
    assert fresh.header("content-encoding") == "gzip"
    assert fresh.body == (tree / "pre.js.gz").read_bytes()
    stale = _get(server, "/static/stale.js", "Accept-Encoding: gzip\r\n")
    assert stale.header("content-encoding") == "gzip"  # compressed at compile time instead
    assert gzip.decompress(stale.body) == (tree / "stale.js").read_bytes()


def test_range_requests_get_the_identity_representation(server: ServerProcess, tree: Path) -> None:
    resp = _get(server, "/static/app.css", "Accept-Encoding: gzip\r\nRange: bytes=0-3\r\n")
    assert resp.status == 206
    assert resp.header("content-encoding") is None
    assert resp.body == (tree / "app.css").read_bytes()[:4]


def test_disk_file_gz_sibling(server: ServerProcess, tree: Path) -> None:
    late = tree / "late.txt"
    late.write_bytes(b"late text file\n" * 100)
    (tree / "late.txt.gz").write_bytes(gzip.compress(late.read_bytes()))
    try:
        plain = _get(server, "/static/late.txt")
        packed = _get(server, "/static/late.txt", "Accept-Encoding: gzip\r\n")
        assert plain.body == late.read_bytes() and plain.header("vary") == "Accept-Encoding"
        assert packed.header("content-encoding") == "gzip"
        assert gzip.decompress(packed.body) == late.read_bytes()
        assert packed.header("etag") != plain.header("etag")
    finally:
        (tree / "late.txt.gz").unlink()
        late.unlink()


# -- directories, names, traversal ---------------------------------------------------------


def test_directories_redirect_then_serve_index(server: ServerProcess) -> None:
    resp = _get(server, "/static/sub")
    assert resp.status == 301 and resp.header("location") == "/static/sub/"
    assert _get(server, "/static/sub?x=1").header("location") == "/static/sub/?x=1"
    assert _get(server, "/static/sub/").body == b"<h1>sub index</h1>\n"
    assert _get(server, "/static").header("location") == "/static/"
    assert _get(server, "/static/").body == b"<h1>root index</h1>\n"
    assert _get(server, "/static/noindex/").status == 404  # no listings
    assert _get(server, "/static/hello.txt/").status == 404


def test_names_that_need_encoding_and_new_files(server: ServerProcess, tree: Path) -> None:
    assert _get(server, "/static/a%20b.txt").body == b"space\n"
    assert _get(server, "/static/hell%6F.txt").body == b"hello, static\n"
    assert _get(server, "/static//sub//index.html").body == b"<h1>sub index</h1>\n"
    new = tree / "created_after_compile.txt"
    new.write_bytes(b"new\n")
    try:
        assert _get(server, "/static/created_after_compile.txt").body == b"new\n"
    finally:
        new.unlink()
    assert _get(server, "/static/missing.txt").status == 404


#: Bound on waiting for a baked file's change to be seen (it is checked once a second).
CHANGE_WAIT_S = 10.0


def _poll(server: ServerProcess, target: str, done) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + CHANGE_WAIT_S
    resp = _get(server, target)
    while not done(resp) and time.monotonic() < deadline:
        time.sleep(0.1)
        resp = _get(server, target)
    return resp


def test_baked_file_changed_or_removed_on_disk_is_seen(server: ServerProcess, tree: Path) -> None:
    path = tree / "changing.txt"
    assert _get(server, "/static/changing.txt").status == 200
    new = f"version {time.time_ns()}\n".encode()
    path.write_bytes(new)
    info = path.stat()
    resp = _poll(server, "/static/changing.txt", lambda r: r.body == new)
    assert resp.body == new
    assert resp.header("etag") == f'"{info.st_size:x}-{info.st_mtime_ns:x}"'
    removed = tree / "removed.txt"
    if removed.exists():
        removed.unlink()
    assert _poll(server, "/static/removed.txt", lambda r: r.status == 404).status == 404


def test_dotfiles_are_not_served(server: ServerProcess) -> None:
    for target in ("/static/.hidden.txt", "/static/.git/config", "/static/%2ehidden.txt", "/static/.git/"):
        assert _get(server, target).status == 404, target


def test_symlink_inside_the_root_is_served(server: ServerProcess) -> None:
    assert _get(server, "/static/link_in.txt").body == b"hello, static\n"


TRAVERSALS = [
    "/static/../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2e%2fsecret.txt",
    "/static/..%2fsecret.txt",
    "/static/..%2Fsecret.txt",
    "/static/a/../../secret.txt",
    "/static/sub/../../secret.txt",
    "/static/%252e%252e/secret.txt",
    "/static/%252e%252e%252fsecret.txt",
    "/static/.%2e/secret.txt",
    "/static/..%5csecret.txt",
    "/static/etc/passwd",
    "/static/etc/hostname",
    "/static/link_out.txt",
    "/static/dirlink/secret.txt",
    "/static/./hello.txt",
    "/static/%2e/hello.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_never_escapes_the_root(server: ServerProcess, target: str) -> None:
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(get(target))
        try:
            resp = reader.response()
        except EOFError:
            return  # refused at the parser: fine, nothing was served
    assert resp.status in (400, 404), (target, resp.status)
    assert b"SECRET" not in resp.body and b"root:" not in resp.body


@pytest.mark.parametrize("target", ["/static/%00", "/static/hello.txt%00.png", "/static/%zz", "/static/%2"])
def test_nul_and_bad_percent_encoding_are_400(server: ServerProcess, target: str) -> None:
    assert _get(server, target).status == 400


# -- streaming: memory, concurrency, descriptors -------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _open_files(pid: int, path: str) -> int:
    """How many of the process's descriptors refer to path."""
    count = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{name}") == path
        except OSError:
            pass  # closed meanwhile
    return count


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_huge_file_to_a_slow_reader_is_not_buffered(server: ServerProcess, tree: Path) -> None:
    expected = hashlib.sha256((tree / "huge.bin").read_bytes()).hexdigest()
    _get(server, "/static/hello.txt")
    before = _rss_kib(server.pid)
    sock, reader = connect(server.port)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(get("/static/huge.bin"))
        head = reader.read_until(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0]
        assert b"Content-Length: %d" % HUGE_SIZE in head
        digest = hashlib.sha256(reader.buf)
        received = len(reader.buf)
        reader.buf = b""
        time.sleep(0.5)  # the reader stalls: the server must wait, not buffer the file
        during = _rss_kib(server.pid)
        while received < HUGE_SIZE:
            chunk = sock.recv(1 << 20)
            assert chunk, "server closed early"
            digest.update(chunk)
            received += len(chunk)
    assert received == HUGE_SIZE
    assert digest.hexdigest() == expected
    assert during - before < HUGE_SIZE // 1024 // 4, (before, during)


def test_concurrent_downloads_are_byte_exact(server: ServerProcess, tree: Path) -> None:
    expected = hashlib.sha256((tree / "medium.bin").read_bytes()).digest()
    size = (tree / "medium.bin").stat().st_size
    clients = []
    for _ in range(16):
        sock, reader = connect(server.port)
        sock.sendall(get("/static/medium.bin"))
        clients.append((sock, reader))
    try:
        for sock, reader in clients:
            resp = reader.response()
            assert resp.status == 200 and len(resp.body) == size
            assert hashlib.sha256(resp.body).digest() == expected
    finally:
        for sock, _ in clients:
            sock.close()


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_client_closing_mid_download_leaks_no_descriptor(server: ServerProcess, tree: Path) -> None:
    huge = str(tree / "huge.bin")
    _get(server, "/static/hello.txt")
    baseline = _fd_count(server.pid)  # may still hold the connection just closed: an upper bound
    socks: List[socket.socket] = []
    for _ in range(6):
        sock, reader = connect(server.port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.sendall(get("/static/huge.bin"))
        reader.read_until(b"\r\n\r\n")
        socks.append(sock)
    assert _open_files(server.pid, huge) == 6  # each download holds its file open
    for sock in socks:
        sock.close()  # unread data: the kernel resets the connection
    deadline = time.monotonic() + FD_WAIT_S
    while (_open_files(server.pid, huge) or _fd_count(server.pid) > baseline) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _open_files(server.pid, huge) == 0
    assert _fd_count(server.pid) <= baseline
    assert _get(server, "/static/hello.txt").status == 200


def test_access_log_counts_file_bodies(tree: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "access.log"
    source = (f"from hypersonic import Hypersonic\n"
              f"app = Hypersonic(access_log={str(log_path)!r}, access_log_format='$status $body_bytes_sent')\n"
              f"app.static('/s', {str(tree)!r})\n")
    with start_app(source, tmp_path / "app", env={"HYPERSONIC_JIT": "1"}) as proc:
        assert _get(proc, "/s/medium.bin").status == 200
        assert _get(proc, "/s/medium.bin", "Range: bytes=0-9\r\n").status == 206
        assert _get(proc, "/s/hello.txt").status == 200
    lines = log_path.read_text().splitlines()
    size = (tree / "medium.bin").stat().st_size
    assert lines == [f"200 {size}", "206 10", "200 14"]


def test_portable_read_send_path(tree: Path, tmp_path: Path) -> None:
    """The pread + send path of hs_file.c (macOS, BSD), forced on Linux with -DHS_FILE_NO_SENDFILE."""
    flags = (os.environ.get("HYPERSONIC_JIT_CFLAGS", "") + " -DHS_FILE_NO_SENDFILE").strip()
    source = f"from hypersonic import Hypersonic\napp = Hypersonic()\napp.static('/s', {str(tree)!r})\n"
    with start_app(source, tmp_path / "app", env={"HYPERSONIC_JIT": "1", "HYPERSONIC_JIT_CFLAGS": flags}) as proc:
        medium = (tree / "medium.bin").read_bytes()
        assert _get(proc, "/s/medium.bin").body == medium
        part = _get(proc, "/s/medium.bin", "Range: bytes=1000-200000\r\n")
        assert part.status == 206 and part.body == medium[1000:200001]
        sock, reader = connect(proc.port)
        with sock:
            sock.sendall(get("/s/huge.bin"))
            resp = reader.response()
        assert hashlib.sha256(resp.body).digest() == hashlib.sha256((tree / "huge.bin").read_bytes()).digest()


# -- curl ----------------------------------------------------------------------------------


def _curl(*args: str) -> subprocess.CompletedProcess:
    # Not under tests/sanitize.sh's preloaded ASan runtime: curl is not instrumented (and can hang with it).
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    return subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True, check=True, env=env,
                          timeout=60)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_compressed_conditional_and_range(server: ServerProcess, tree: Path, tmp_path: Path) -> None:
    url = f"{server.url}/static/app.css"
    out = _curl("--compressed", "-D", str(tmp_path / "h"), "-o", str(tmp_path / "b"), url)
    assert out.returncode == 0
    assert "content-encoding: gzip" in (tmp_path / "h").read_text().lower()
    assert (tmp_path / "b").read_bytes() == (tree / "app.css").read_bytes()
    # curl -z: If-Modified-Since from a file's mtime
    code = _curl("-z", str(tree / "app.css"), "-o", "/dev/null", "-w", "%{http_code}", url).stdout
    assert code == b"304"
    part = _curl("-r", "100-199", f"{server.url}/static/medium.bin").stdout
    assert part == (tree / "medium.bin").read_bytes()[100:200]
    etag = [line.split(":", 1)[1].strip() for line in (tmp_path / "h").read_text().splitlines()
            if line.lower().startswith("etag:")][0]
    code = _curl("--compressed", "-H", f"If-None-Match: {etag}", "-o", "/dev/null", "-w", "%{http_code}",
                 url).stdout
    assert code == b"304"
