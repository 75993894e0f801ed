"""The seed's SYNOPSIS loop (examples/synopsis.py) served in a subprocess, on every
backend, answering real http.client requests; plus the environment switches
(HYPERSONIC_JIT=0, HYPERSONIC_EVENT_BACKEND) seen from a fresh interpreter."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IO_WAIT_S

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "synopsis.py"


def backend_env(backend: str, cache_dir) -> dict:
    env = dict(os.environ, HYPERSONIC_CACHE_DIR=str(cache_dir))
    env.pop("HYPERSONIC_JIT", None)
    env.pop("HYPERSONIC_EVENT_BACKEND", None)
    if backend == "reference":
        env["HYPERSONIC_JIT"] = "0"
    else:
        env["HYPERSONIC_EVENT_BACKEND"] = backend
    return env


def _backends():
    from hypersonic.socket import available_backends

    return available_backends()


@pytest.fixture(params=_backends())
def synopsis_server(request, socket_cache_dir):
    """examples/synopsis.py on 127.0.0.1, a free port, the given backend; stopped by PID."""
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", "0", "--host", "127.0.0.1"],
        env=backend_env(request.param, socket_cache_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # "listening on http://127.0.0.1:PORT/ (backend)"
        assert line.startswith("listening on http://127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
        port = int(line.split(":")[2].split("/")[0])
        expected = "poll" if request.param == "reference" else request.param
        assert line.rstrip().endswith(f"({expected})")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=IO_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=IO_WAIT_S)
        proc.stdout.close()
        proc.stderr.close()


def test_synopsis_loop_answers_keep_alive_requests(synopsis_server):
    conn = http.client.HTTPConnection("127.0.0.1", synopsis_server, timeout=IO_WAIT_S)
    try:
        for i in range(5):
            conn.request("GET", f"/n/{i}?q=1")
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, b"Hello")
            assert resp.getheader("Connection") == "keep-alive"
        conn.request("POST", "/post", body=b"x" * 100000)
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"Hello")
    finally:
        conn.close()


def test_synopsis_loop_answers_chunked_uploads(synopsis_server):
    conn = http.client.HTTPConnection("127.0.0.1", synopsis_server, timeout=IO_WAIT_S)
    try:
        conn.request("POST", "/stream", body=iter([b"abc", b"def"]), encode_chunked=True)
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"Hello")
    finally:
        conn.close()


def test_synopsis_loop_closes_after_http_1_0(synopsis_server):
    with socket.create_connection(("127.0.0.1", synopsis_server), timeout=IO_WAIT_S) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        for _ in range(100):  # bounded: until the server closes
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nHello")
    assert b"Connection: close\r\n" in data


def test_synopsis_loop_answers_pipelined_requests_in_order(synopsis_server):
    with socket.create_connection(("127.0.0.1", synopsis_server), timeout=IO_WAIT_S) as s:
        s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" * 3 + b"GET /z HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        for _ in range(100):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK\r\n") == 4


def test_synopsis_loop_rejects_an_oversized_head_with_431(synopsis_server):
    with socket.create_connection(("127.0.0.1", synopsis_server), timeout=IO_WAIT_S) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
        data = b""
        for _ in range(100):
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 431 ")


def test_synopsis_loop_survives_clients_that_vanish(synopsis_server):
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", synopsis_server), timeout=IO_WAIT_S)
        s.sendall(b"GET / HTTP/1.1\r\nHo")
        s.close()
    conn = http.client.HTTPConnection("127.0.0.1", synopsis_server, timeout=IO_WAIT_S)
    try:
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"Hello"
    finally:
        conn.close()


@pytest.mark.parametrize(
    "env, expected",
    [({"HYPERSONIC_JIT": "0"}, "_socket_ref poll"), ({"HYPERSONIC_EVENT_BACKEND": "poll"}, "_hs_ poll")],
)
def test_environment_selects_the_implementation(socket_cache_dir, env, expected):
    code = (
        "import hypersonic.socket as hs; m = hs._active; "
        "print(m.__name__.rsplit('.', 1)[-1][:4] if m.__name__.startswith('_hs_') else m.__name__.rsplit('.', 1)[-1],"
        " hs.event_backend())"
    )
    full_env = dict(os.environ, HYPERSONIC_CACHE_DIR=str(socket_cache_dir), **env)
    out = subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


def test_unknown_backend_in_environment_is_a_clear_error(socket_cache_dir):
    full_env = dict(os.environ, HYPERSONIC_CACHE_DIR=str(socket_cache_dir), HYPERSONIC_EVENT_BACKEND="select")
    out = subprocess.run([sys.executable, "-c", "import hypersonic.socket"], env=full_env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode != 0
    assert "HYPERSONIC_EVENT_BACKEND" in out.stderr and "select" in out.stderr


def test_import_compiles_into_the_seeds_default_cache_dir(tmp_path):
    env = dict(os.environ)
    for name in ("HYPERSONIC_CACHE_DIR", "HYPERSONIC_JIT", "HYPERSONIC_EVENT_BACKEND"):
        env.pop(name, None)
    code = "import hypersonic.socket as hs; print(hs.compile_socket_ops(), hs.event_backend())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "True"
    built = list((tmp_path / "_hypersonic_socket_cache").glob("_hs_*"))
    assert any(p.suffix == ".so" for p in built), built
