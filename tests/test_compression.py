"""app.compress(): gzip of static (baked variants) and dynamic responses, over real TCP.

Every behavioural test runs against both servers: the C loop and the pure-Python
fallback (HYPERSONIC_JIT=0); they must answer byte-for-byte alike apart from Date.
Clients: raw sockets (exact bytes, pipelining), curl --compressed, httpx.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import httpx
import pytest

from _http_wire import READ_TIMEOUT, WireResponse, connect, get, request
from _server_util import ServerProcess, start_app
from hypersonic import Hypersonic, Response
from hypersonic._compress import DEFAULT_TYPES, Compression

APP = r'''
import gzip
import random
from hypersonic import Hypersonic, Response

BIG_TEXT = "hello compression " * 400          # 7200 bytes, compresses well
SMALL_TEXT = "tiny"
BIG_HTML = "<p>paragraph</p>\n" * 300
BIG_XML = "<item>value</item>" * 300
SVG = "<svg xmlns='http://www.w3.org/2000/svg'>" + "<rect/>" * 400 + "</svg>"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 4000
NOISE = random.Random(7).randbytes(3000)  # gzip cannot shrink it

app = Hypersonic()
app.compress(min_size=512)

app.get("/static/big", lambda: BIG_TEXT)
app.get("/static/small", lambda: SMALL_TEXT)
app.get("/static/json", lambda: {"items": list(range(1000))})
app.get("/static/png", lambda: Response(PNG, content_type="image/png"))

app.get("/dyn/text", lambda req: BIG_TEXT)
app.get("/dyn/bytes", lambda req: BIG_TEXT.encode())
app.get("/dyn/small", lambda req: SMALL_TEXT)
app.get("/dyn/dict", lambda req: {"items": list(range(1000))})
app.get("/dyn/list", lambda req: [{"n": n, "name": "x" * 10} for n in range(300)])
app.get("/dyn/html", lambda req: Response(BIG_HTML, content_type="text/html; charset=utf-8",
                                          headers={"Vary": "Origin"}))
app.get("/dyn/vary-star", lambda req: Response(BIG_HTML, content_type="text/html", headers={"Vary": "*"}))
app.get("/dyn/tuple", lambda req: (201, {"Content-Type": "application/xml"}, BIG_XML))
app.get("/dyn/svg", lambda req: Response(SVG, content_type="image/svg+xml"))
app.get("/dyn/vnd", lambda req: Response(BIG_TEXT, content_type="application/vnd.api+json"))
app.get("/dyn/png", lambda req: Response(PNG, content_type="image/png"))
app.get("/dyn/encoded", lambda req: Response(gzip.compress(b"already encoded by the handler", mtime=0),
                                             content_type="text/plain", headers={"Content-Encoding": "gzip"}))
app.get("/dyn/nocontent", lambda req: Response(None, status=204))
app.get("/dyn/random", lambda req: Response(NOISE, content_type="text/plain"))
'''

BIG_TEXT = "hello compression " * 400
SMALL_TEXT = "tiny"
BIG_HTML = "<p>paragraph</p>\n" * 300
BIG_XML = "<item>value</item>" * 300
SVG = "<svg xmlns='http://www.w3.org/2000/svg'>" + "<rect/>" * 400 + "</svg>"
DICT_JSON = json.dumps({"items": list(range(1000))}, separators=(",", ":")).encode()
LIST_JSON = json.dumps([{"n": n, "name": "x" * 10} for n in range(300)], separators=(",", ":")).encode()

# route -> the identity body it serves
EXPECTED: Dict[str, bytes] = {
    "/static/big": BIG_TEXT.encode(),
    "/static/json": DICT_JSON,
    "/dyn/text": BIG_TEXT.encode(),
    "/dyn/bytes": BIG_TEXT.encode(),
    "/dyn/dict": DICT_JSON,
    "/dyn/list": LIST_JSON,
    "/dyn/html": BIG_HTML.encode(),
    "/dyn/tuple": BIG_XML.encode(),
    "/dyn/svg": SVG.encode(),
    "/dyn/vnd": BIG_TEXT.encode(),
}
COMPRESSIBLE_BIG = ["/static/big", "/static/json", "/dyn/text", "/dyn/bytes", "/dyn/dict", "/dyn/list",
                    "/dyn/html", "/dyn/tuple", "/dyn/svg", "/dyn/vnd"]


@pytest.fixture(scope="module", params=["c", "python"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"HYPERSONIC_JIT": "0"} if request.param == "python" else {"HYPERSONIC_JIT": "1"}
    directory = tmp_path_factory.mktemp(f"compress-{request.param}")
    with start_app(APP, directory, env=env) as srv:
        yield srv


def fetch(server: ServerProcess, path: str, accept: Optional[str] = "gzip", method: str = "GET",
          version: str = "1.1") -> WireResponse:
    extra = "" if accept is None else f"Accept-Encoding: {accept}\r\n"
    return request(server.port, get(path, extra, method=method, version=version), head_request=method == "HEAD")


def decoded(resp: WireResponse) -> bytes:
    return gzip.decompress(resp.body) if resp.header("content-encoding") == "gzip" else resp.body


# ---- negotiation ------------------------------------------------------------------------

@pytest.mark.parametrize("path", COMPRESSIBLE_BIG)
def test_gzip_body_decompresses_byte_exact(server: ServerProcess, path: str) -> None:
    resp = fetch(server, path)
    assert resp.status in (200, 201)
    assert resp.header("content-encoding") == "gzip"
    assert int(resp.header("content-length") or -1) == len(resp.body)  # the compressed length
    assert resp.body[:2] == b"\x1f\x8b"
    assert gzip.decompress(resp.body) == EXPECTED[path]
    assert len(resp.body) < len(EXPECTED[path])
    assert "accept-encoding" in (resp.header("vary") or "").lower()


@pytest.mark.parametrize(
    "accept, compressed",
    [
        (None, False),
        ("gzip;q=0", False),
        ("br", False),
        ("identity", False),
        ("*;q=0", False),
        ("gzip;q=0, *", False),
        ("*", True),
        ("x-gzip", True),
        ("deflate, gzip;q=0.5", True),
        ("GZIP", True),
        ("br\r\nAccept-Encoding: gzip", True),          # repeated fields combine
        ("gzip\r\nAccept-Encoding: gzip;q=0", True),     # the highest gzip q wins
        ("*\r\nAccept-Encoding: gzip;q=0", False),      # explicit gzip beats *
    ],
)
@pytest.mark.parametrize("path", ["/static/big", "/dyn/text", "/dyn/html"])
def test_accept_encoding_decides(server: ServerProcess, path: str, accept: Optional[str], compressed: bool) -> None:
    resp = fetch(server, path, accept)
    assert (resp.header("content-encoding") == "gzip") is compressed
    assert decoded(resp) == EXPECTED[path]
    assert "accept-encoding" in (resp.header("vary") or "").lower()  # both variants say they vary


@pytest.mark.parametrize("path", ["/static/small", "/dyn/small"])
def test_small_body_identity_with_vary(server: ServerProcess, path: str) -> None:
    resp = fetch(server, path)
    assert resp.header("content-encoding") is None
    assert resp.body == SMALL_TEXT.encode()
    assert resp.header_all("vary") == ["Accept-Encoding"]


@pytest.mark.parametrize("path", ["/static/png", "/dyn/png"])
def test_incompressible_type_identity_without_vary(server: ServerProcess, path: str) -> None:
    resp = fetch(server, path)
    assert resp.header("content-encoding") is None
    assert resp.header("vary") is None
    assert resp.body.startswith(b"\x89PNG")


def test_body_gzip_cannot_shrink_is_identity_with_vary(server: ServerProcess) -> None:
    resp = fetch(server, "/dyn/random")
    assert resp.header("content-encoding") is None
    assert len(resp.body) == 3000
    assert resp.header("vary") == "Accept-Encoding"


def test_handler_vary_is_merged(server: ServerProcess) -> None:
    resp = fetch(server, "/dyn/html")
    assert resp.header_all("vary") == ["Origin, Accept-Encoding"]
    assert resp.header("content-type") == "text/html; charset=utf-8"


def test_vary_star_left_alone(server: ServerProcess) -> None:
    resp = fetch(server, "/dyn/vary-star")
    assert resp.header_all("vary") == ["*"]
    assert resp.header("content-encoding") == "gzip"


def test_handler_content_encoding_is_not_touched(server: ServerProcess) -> None:
    resp = fetch(server, "/dyn/encoded")
    assert resp.header_all("content-encoding") == ["gzip"]
    assert resp.header("vary") is None
    assert gzip.decompress(resp.body) == b"already encoded by the handler"


def test_no_content_is_not_compressed(server: ServerProcess) -> None:
    resp = fetch(server, "/dyn/nocontent")
    assert resp.status == 204
    assert resp.header("content-encoding") is None
    assert resp.header("vary") is None


def test_json_keeps_its_content_type(server: ServerProcess) -> None:
    for path in ("/dyn/dict", "/dyn/list", "/static/json"):
        resp = fetch(server, path)
        assert resp.header("content-type") == "application/json"
        assert json.loads(gzip.decompress(resp.body)) == json.loads(EXPECTED[path])


@pytest.mark.parametrize("path", ["/static/big", "/dyn/text", "/dyn/tuple", "/static/small"])
@pytest.mark.parametrize("accept", ["gzip", None])
def test_head_has_the_headers_of_get(server: ServerProcess, path: str, accept: Optional[str]) -> None:
    got = fetch(server, path, accept)
    head = fetch(server, path, accept, method="HEAD")
    assert head.body == b""
    drop = {b"date"}
    assert [(n, v) for n, v in head.headers if n.lower() not in drop] == \
        [(n, v) for n, v in got.headers if n.lower() not in drop]


def test_http10_gets_the_variant_with_keep_alive_header(server: ServerProcess) -> None:
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(b"GET /static/big HTTP/1.0\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n")
        resp = reader.response()
        assert resp.header("connection") == "keep-alive"
        assert gzip.decompress(resp.body) == EXPECTED["/static/big"]


def test_pipelined_mixed_accept_encoding_on_one_connection(server: ServerProcess) -> None:
    plan = [("/static/big", "gzip"), ("/static/big", None), ("/dyn/dict", "gzip;q=0"), ("/dyn/dict", "*"),
            ("/dyn/html", "br"), ("/dyn/html", "gzip"), ("/static/small", "gzip"), ("/static/big", "gzip")]
    raw = b"".join(get(path, "" if ae is None else f"Accept-Encoding: {ae}\r\n") for path, ae in plan)
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(raw)
        for path, ae in plan:
            resp = reader.response()
            want_gzip = ae in ("gzip", "*") and path != "/static/small"
            assert (resp.header("content-encoding") == "gzip") is want_gzip, (path, ae)
            assert decoded(resp) == EXPECTED.get(path, SMALL_TEXT.encode())
        # and the connection is still usable (keep-alive)
        sock.sendall(get("/dyn/text", "Accept-Encoding: gzip\r\n"))
        assert gzip.decompress(reader.response().body) == EXPECTED["/dyn/text"]


def test_httpx_decodes_transparently(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=READ_TIMEOUT) as client:
        for path in ("/static/big", "/dyn/dict", "/dyn/html"):
            resp = client.get(path, headers={"Accept-Encoding": "gzip"})
            assert resp.headers["content-encoding"] == "gzip"
            assert resp.content == EXPECTED[path]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("path", ["/static/big", "/dyn/text", "/dyn/dict"])
def test_curl_compressed(server: ServerProcess, path: str, tmp_path: Path) -> None:
    headers = tmp_path / "headers.txt"
    # curl is not instrumented: no preloaded sanitizer runtime (tests/sanitize.sh sets LD_PRELOAD)
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    res = subprocess.run(["curl", "-sS", "--compressed", "--max-time", "10", "-D", str(headers),
                          server.url + path], capture_output=True, timeout=30, check=True, env=env)
    assert res.stdout == EXPECTED[path]
    assert "content-encoding: gzip" in headers.read_text().lower()


# ---- the two servers agree ------------------------------------------------------------------

def _strip_date(raw: bytes) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    return b"\r\n".join(line for line in head.split(b"\r\n") if not line.lower().startswith(b"date:")) + body


def test_c_and_python_servers_send_the_same_bytes(tmp_path: Path) -> None:
    paths = ["/static/big", "/static/small", "/static/png", "/dyn/text", "/dyn/dict", "/dyn/html",
             "/dyn/tuple", "/dyn/encoded", "/dyn/random"]
    answers: List[List[bytes]] = []
    for jit in ("1", "0"):
        with start_app(APP, tmp_path / jit, env={"HYPERSONIC_JIT": jit}) as srv:
            answers.append([_strip_date(fetch(srv, p, ae).raw) for p in paths for ae in ("gzip", None)])
    assert answers[0] == answers[1]


# ---- the API ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        (dict(min_size=-1), ValueError, "min_size"),
        (dict(min_size=1.5), TypeError, "min_size"),
        (dict(min_size=True), TypeError, "min_size"),
        (dict(level=0), ValueError, "level"),
        (dict(level=10), ValueError, "level"),
        (dict(level="6"), TypeError, "level"),
        (dict(types="text/html"), TypeError, "types"),
        (dict(types=[b"text/html"]), TypeError, "types"),
        (dict(types=["text"]), ValueError, "types"),
        (dict(types=["text/html; charset=utf-8"]), ValueError, "types"),
        (dict(types=["*/json"]), ValueError, "types"),
        (dict(types=[]), ValueError, "types"),
        (dict(types=5), TypeError, "types"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, exc: type, word: str) -> None:
    app = Hypersonic()
    with pytest.raises(exc, match=word):
        app.compress(**kwargs)


def test_compress_after_compile_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERSONIC_JIT", "0")
    app = Hypersonic()
    app.get("/", lambda: "x")
    app.compile()
    with pytest.raises(RuntimeError, match="before compile"):
        app.compress()


def test_compress_again_replaces_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERSONIC_JIT", "0")
    app = Hypersonic()
    app.get("/", lambda: "x" * 100)
    app.compress(min_size=10_000)
    app.compress(min_size=10)
    app.compile()
    assert app._compression is not None and app._compression.min_size == 10
    spec = app._module._specs[0]  # type: ignore[union-attr]
    assert spec.gzip_variant is not None


@pytest.mark.parametrize(
    "content_type, expected",
    [
        ("text/plain; charset=utf-8", True),
        ("TEXT/HTML", True),
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("application/ld+json", True),
        ("application/+json", False),
        ("application/atom+xml", True),
        ("image/svg+xml", True),
        ("image/png", False),
        ("application/octet-stream", False),
        ("application/gzip", False),
        ("text/event-stream", False),
        ("nonsense", False),
    ],
)
def test_default_types(content_type: str, expected: bool) -> None:
    assert Compression().compressible_type(content_type) is expected


def test_types_patterns() -> None:
    c = Compression(types=["Text/HTML", "application/*+yaml", "font/*"])
    assert c.types == ("text/html", "application/*+yaml", "font/*")
    assert c.compressible_type("text/html")
    assert not c.compressible_type("text/css")
    assert c.compressible_type("application/openapi+yaml")
    assert c.compressible_type("font/ttf")
    assert DEFAULT_TYPES[0] == "text/*"


def test_same_body_same_gzip_bytes() -> None:
    c = Compression(level=9)
    assert c.gzip(b"abc" * 100) == c.gzip(b"abc" * 100)
    assert gzip.decompress(c.gzip(b"abc" * 100)) == b"abc" * 100


def test_static_variant_is_baked_only_when_worth_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERSONIC_JIT", "0")
    app = Hypersonic()
    app.get("/big", lambda: "a" * 5000)
    app.get("/small", lambda: "a" * 10)
    app.get("/png", lambda: Response(b"a" * 5000, content_type="image/png"))
    app.compress()
    app.compile()
    specs = {s.pattern: s for s in app._module._specs}  # type: ignore[union-attr]
    assert specs["/big"].gzip_variant is not None
    assert b"Vary: Accept-Encoding\r\n" in specs["/big"].baked
    assert b"Content-Encoding: gzip\r\n" in specs["/big"].gzip_variant[0]
    assert specs["/small"].gzip_variant is None and b"Vary: Accept-Encoding" in specs["/small"].baked
    assert specs["/png"].gzip_variant is None and b"Vary" not in specs["/png"].baked


def test_uncompressed_app_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERSONIC_JIT", "0")
    app = Hypersonic()
    app.get("/big", lambda: "a" * 5000)
    app.compile()
    spec = app._module._specs[0]  # type: ignore[union-attr]
    assert spec.gzip_variant is None and b"Vary" not in spec.baked
    assert app._configuration["compression"] is None


# ---- with middleware and streaming ---------------------------------------------------------

HOOKED_APP = r'''
from hypersonic import Hypersonic, Response

TEXT = "hooked and compressed " * 200

app = Hypersonic()
app.compress(min_size=100)
app.cors(origins=["https://a.example"])          # CORS adds Vary: Origin per request


def double(req, response):
    response.body = response.body + response.body  # an after-hook changes the body


app.get("/static-hooked", lambda: TEXT, after=double)   # static with a hook: runs in Python per request
app.get("/dyn-hooked", lambda req: TEXT, after=double)


@app.after
def stamp(req, response):
    response.headers.append(("X-After", "1"))


@app.get("/stream", streaming=True)
def stream(req, stream):
    stream.headers(200, content_type="text/plain")
    for _ in range(20):
        stream.write(TEXT)
'''
HOOKED_TEXT = ("hooked and compressed " * 200).encode()


@pytest.fixture(scope="module", params=["c", "python"])
def hooked_server(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"HYPERSONIC_JIT": "0"} if request.param == "python" else {"HYPERSONIC_JIT": "1"}
    with start_app(HOOKED_APP, tmp_path_factory.mktemp(f"compress-hooked-{request.param}"), env=env) as srv:
        yield srv


@pytest.mark.parametrize("path", ["/static-hooked", "/dyn-hooked"])
def test_compression_applies_after_the_hooks(hooked_server: ServerProcess, path: str) -> None:
    resp = fetch(hooked_server, path)
    assert resp.header("content-encoding") == "gzip"
    assert gzip.decompress(resp.body) == HOOKED_TEXT * 2  # the after-hook's body, compressed
    assert resp.header("x-after") == "1"


def test_cors_vary_and_accept_encoding_merge(hooked_server: ServerProcess) -> None:
    raw = get("/dyn-hooked", "Accept-Encoding: gzip\r\nOrigin: https://a.example\r\n")
    resp = request(hooked_server.port, raw)
    vary = [v.strip().lower() for value in resp.header_all("vary") for v in value.split(",")]
    assert sorted(vary) == ["accept-encoding", "origin"]
    assert resp.header("access-control-allow-origin") == "https://a.example"
    assert resp.header("content-encoding") == "gzip"


def test_streaming_responses_are_not_compressed(hooked_server: ServerProcess) -> None:
    with httpx.Client(base_url=hooked_server.url, timeout=READ_TIMEOUT) as client:
        resp = client.get("/stream", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in resp.headers
        assert resp.content == HOOKED_TEXT * 20


def test_response_with_etag_is_not_compressed_on_the_fly(tmp_path) -> None:
    """One strong validator must not name two representations (RFC 9110 8.8.3)."""
    from hypersonic._compress import Compression

    compression = Compression(min_size=10, level=6)
    block = b"Content-Type: text/plain; charset=utf-8\r\nETag: \"v1\"\r\n"
    body = b"compressible " * 100
    assert compression.negotiate(200, block, body, True) == (block, body)
    plain = b"Content-Type: text/plain; charset=utf-8\r\n"
    out_block, out_body = compression.negotiate(200, plain, body, True)
    assert b"Content-Encoding: gzip" in out_block and len(out_body) < len(body)
    file_result = (200, plain, 7, 0, 100)
    assert compression.adjust(file_result, True) == file_result
