"""The production features together over real TCP: static files behind hooks,
CORS and compression, on the C server and the pure-Python fallback."""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from _http_wire import get, request
from _server_util import ServerProcess, start_app

SERVERS = ["c", "python"]

SMALL_TEXT = "small text file\n" * 8          # 128 bytes: under min_size
BIG_TEXT = "compressible line of text\n" * 400  # 10 KiB: baked, with a compile-time gzip variant
LARGE = bytes(range(256)) * 1024              # 256 KiB: sent from disk


def _docroot(base: Path) -> Path:
    root = base / "public"
    root.mkdir(parents=True, exist_ok=True)
    (root / "small.txt").write_text(SMALL_TEXT)
    (root / "big.txt").write_text(BIG_TEXT)
    (root / "large.bin").write_bytes(LARGE)
    (root / "private").mkdir(exist_ok=True)
    (root / "private" / "secret.txt").write_text("secret\n")
    return root


APP = """
from hypersonic import Hypersonic, Response

app = Hypersonic()
app.request_id()
app.cors(origins=["https://app.example.com"])
app.compress(min_size=512)

@app.before
def guard(req):
    if req.path.startswith("/files/private/") and req.header("authorization") != "Bearer ok":
        return Response("no", status=401)

@app.after
def served_by(req, resp):
    resp.headers.append(("X-Served-By", "hs"))

app.static("/files", {root!r}, max_age=60)

@app.get("/report")
def report(req):
    return {{"rows": list(range(400))}}
"""


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp(f"combined_{request.param}")
    root = _docroot(base)
    env = {"HYPERSONIC_JIT": "0"} if request.param == "python" else {}
    with start_app(APP.format(root=str(root)), base, module=f"combined_{request.param}", env=env) as proc:
        yield proc


def test_static_file_gets_request_id_cors_and_after_hook_headers(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/files/small.txt", headers={"Origin": "https://app.example.com"})
    assert response.status_code == 200 and response.text == SMALL_TEXT
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert response.headers["x-served-by"] == "hs"
    assert response.headers["etag"]


def test_large_file_from_disk_gets_hook_headers_and_exact_bytes(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/files/large.bin", headers={"X-Request-ID": "dl-1"})
    assert response.status_code == 200
    assert response.content == LARGE
    assert response.headers["x-request-id"] == "dl-1"
    assert response.headers["x-served-by"] == "hs"


def test_before_hook_guards_static_files(server: ServerProcess) -> None:
    denied = httpx.get(f"{server.url}/files/private/secret.txt")
    assert denied.status_code == 401
    assert denied.headers["x-request-id"]
    allowed = httpx.get(f"{server.url}/files/private/secret.txt", headers={"Authorization": "Bearer ok"})
    assert allowed.status_code == 200 and allowed.text == "secret\n"


def test_cors_preflight_to_a_static_file(server: ServerProcess) -> None:
    extra = "Origin: https://app.example.com\r\nAccess-Control-Request-Method: GET\r\n"
    reply = request(server.port, get("/files/big.txt", extra=extra, method="OPTIONS"))
    assert reply.status == 204
    assert reply.header("access-control-allow-origin") == "https://app.example.com"
    plain = request(server.port, get("/files/big.txt", method="OPTIONS"))
    assert plain.status == 204
    assert "GET" in plain.header("allow")


def test_static_file_gzip_variant_has_its_own_etag_and_is_not_compressed_twice(server: ServerProcess) -> None:
    identity = request(server.port, get("/files/big.txt"))
    zipped = request(server.port, get("/files/big.txt", extra="Accept-Encoding: gzip\r\n"))
    assert identity.header("content-encoding") is None
    assert identity.body.decode() == BIG_TEXT
    assert zipped.header("content-encoding") == "gzip"
    assert gzip.decompress(zipped.body).decode() == BIG_TEXT
    assert zipped.header("etag") != identity.header("etag")
    assert zipped.header("x-request-id") and zipped.header("x-served-by") == "hs"
    # a conditional request with the gzip variant's validator is a 304 for that variant
    again = request(server.port, get("/files/big.txt",
                                     extra=f"Accept-Encoding: gzip\r\nIf-None-Match: {zipped.header('etag')}\r\n"))
    assert again.status == 304 and again.body == b""


def test_dynamic_route_compressed_after_hooks(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/report", headers={"Accept-Encoding": "gzip",
                                                         "Origin": "https://app.example.com"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.json() == {"rows": list(range(400))}  # httpx decompressed it
    vary = [v.strip() for v in response.headers["vary"].split(",")]
    assert "Origin" in vary and "Accept-Encoding" in vary
    assert response.headers["x-served-by"] == "hs"


def test_curl_compressed_fetches_static_and_dynamic(server: ServerProcess, tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    for path, expected in (("/files/big.txt", BIG_TEXT.encode()), ("/files/large.bin", LARGE)):
        out = tmp_path / "out"
        result = subprocess.run(["curl", "-sS", "--compressed", "-o", str(out), "-w", "%{http_code}",
                                 f"{server.url}{path}"], capture_output=True, text=True, timeout=30, env=env)
        assert result.stdout == "200", result.stderr
        assert out.read_bytes() == expected
