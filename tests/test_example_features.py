"""examples/features.py (the README's features, in one app) served as a user
runs it, checked endpoint by endpoint with real clients."""

from __future__ import annotations

import gzip
import re
import sys
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from _eventsource import EventSource
from _http_wire import get, request
from _server_util import TEST_CACHE_DIR, ServerProcess, free_port

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "features.py"
PUBLIC = REPO / "examples" / "public"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    port = free_port()
    log = tmp_path_factory.mktemp("example_features") / "server.log"
    argv = [sys.executable, str(EXAMPLE), "--host", "127.0.0.1", "--port", str(port)]
    with ServerProcess(argv, port, log_path=log, env={"HYPERSONIC_CACHE_DIR": str(TEST_CACHE_DIR)},
                       cwd=str(REPO)).start() as proc:
        yield proc


def test_index_page_from_the_static_mount_with_validators(server: ServerProcess) -> None:
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200
    assert page.content == (PUBLIC / "index.html").read_bytes()
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "public, max-age=300"
    assert re.fullmatch(r"[0-9a-f]{32}", page.headers["x-request-id"])
    again = httpx.get(f"{server.url}/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_stylesheet_gzip_when_asked(server: ServerProcess) -> None:
    reply = request(server.port, get("/css/site.css", extra="Accept-Encoding: gzip\r\n"))
    assert reply.status == 200
    css = (PUBLIC / "css" / "site.css").read_bytes()
    if reply.header("content-encoding") == "gzip":
        assert gzip.decompress(reply.body) == css
        assert "Accept-Encoding" in reply.header("vary")
    else:  # too small to be worth a gzip variant
        assert reply.body == css
        assert len(css) < 1024


def test_api_needs_the_token(server: ServerProcess) -> None:
    denied = httpx.get(f"{server.url}/api/me")
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"] == "Bearer"
    me = httpx.get(f"{server.url}/api/me", headers={"Authorization": "Bearer demo", "X-Request-ID": "readme-1"})
    assert me.status_code == 200
    assert me.json() == {"user": "demo", "request_id": "readme-1"}
    assert me.headers["cache-control"] == "no-store"
    assert me.headers["x-request-id"] == "readme-1"


def test_api_json_is_compressed_and_cors_allowed(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/api/items", headers={"Authorization": "Bearer demo",
                                                            "Accept-Encoding": "gzip",
                                                            "Origin": "http://localhost:3000"})
    assert response.headers["content-encoding"] == "gzip"
    assert len(response.json()["items"]) == 50
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_csv_export_is_streamed_chunked(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/export.csv")
    assert response.status_code == 200
    assert response.headers["transfer-encoding"] == "chunked"
    lines = response.text.splitlines()
    assert lines[0] == "n,square" and lines[-1] == "999,998001" and len(lines) == 1001


def test_clock_events_and_resume(server: ServerProcess) -> None:
    source = EventSource(server.port, "/events").connect()
    try:
        first = source.read_until(2)
        assert [e.type for e in first] == ["tick", "tick"]
        assert [e.last_event_id for e in first] == ["1", "2"]
        assert re.fullmatch(r"\d\d:\d\d:\d\d", first[0].data)
        source.reconnect()  # sends Last-Event-ID: 2, as a browser does
        resumed = source.read_until(3)
        assert resumed[-1].last_event_id == "3"
    finally:
        source.close()


def test_probes(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/health").text == "OK"
    ready = httpx.get(f"{server.url}/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"public dir": "ok"}}
