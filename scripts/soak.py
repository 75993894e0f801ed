#!/usr/bin/env python3
"""Soak test: minutes of mixed traffic at full speed against a Hypersonic server it starts.

Usage::

    .venv/bin/python scripts/soak.py                 # 10 minutes, 2 workers
    .venv/bin/python scripts/soak.py --seconds 20    # the CI-sized run
    .venv/bin/python scripts/soak.py --minutes 10 --json /tmp/soak.json

The server is ``scripts/soak_app.py`` (static, dynamic-with-parameter, POST
echo routes) run with ``--workers`` workers on a free 127.0.0.1 port. Beside it,
one load-generator process per class of client runs asyncio over raw sockets
(this file is the load generator; no third-party client):

well-behaved (every response validated: status line, framing, body, and
``Connection: close`` where one is due; any deviation, timeout, reset or early
close is an error):

* ``keepalive``: persistent connections, one request at a time, mixing the
  static route, the dynamic route (``/item/<n>?q=<m>``) and POST echo;
* ``pipelined``: persistent connections writing 16 requests in one ``send``
  and reading the 16 answers in order (each body names its request);
* ``per_request``: a new connection for every request (``Connection: close``
  or HTTP/1.0), the response followed by the server's close;
* ``post``: persistent connections POSTing random bodies (0-64 KiB) with
  Content-Length, or chunked in random chunk sizes and written in pieces; the
  echo must be byte-identical;
* ``wrk`` (when ``wrk`` is on PATH, unless ``--no-wrk``): one wrk thread with
  keep-alive connections over static and dynamic targets, every response
  checked by ``scripts/soak_wrk.lua`` (status 200, body from the expected set);
  its socket errors and timeouts count as errors. It is the class that pushes
  the server hardest (the Python clients are slower than the server);

hostile (their answers are checked too, but being cut off is expected):

* ``slowloris``: connections trickling a never-ending head a byte at a time;
  the server must answer 408 (after ``recv_timeout``) or close, never anything
  else; they reconnect;
* ``garbage``: random bytes, malformed heads from a list (each must be a 4xx
  or a close, never a 2xx), requests cut off midway, connections reset with
  SO_LINGER 0, and clients leaving in the middle of a 256 KiB response.

Checks (exit status 1 when one fails):

* zero errors in the well-behaved classes, and each of them served requests;
* the server's worker PIDs never change (no worker crashed and was replaced);
* the RSS of the workers, summed, sampled every ``--sample`` seconds: after
  the warm-up (``--warmup``, default 20% of the run, at most 60 s) the sum at
  the end (mean of the last 5 samples) is less than ``--rss-growth-limit``
  percent (5) above its level right after the warm-up (mean of the first 5
  samples after it). Each process (and the supervisor, which serves nothing)
  is reported too;
* after the load stops, the server answers, and SIGTERM stops it with exit 0.

It prints a summary and, with ``--json``, writes the figures to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from _server_util import TEST_CACHE_DIR, ServerProcess, free_port  # noqa: E402

HOST = "127.0.0.1"
APP_SCRIPT = REPO / "scripts" / "soak_app.py"
WRK_SCRIPT = REPO / "scripts" / "soak_wrk.lua"
#: wrk threads and connections of the ``wrk`` class.
WRK_THREADS = 1
WRK_CONNECTIONS = 8
#: wrk's per-request timeout (a request slower than this is counted as an error).
WRK_TIMEOUT_SECONDS = 10

#: Requests per pipelined batch.
PIPELINE_DEPTH = 16
#: Largest POST body.
MAX_POST_BODY = 64 * 1024
#: Seconds any single read or connect of a well-behaved client may take.
IO_TIMEOUT = 15.0
#: Errors kept verbatim per class (the rest are only counted).
MAX_ERRORS_KEPT = 20
#: Size of ``/big`` in soak_app.py.
BIG_BODY_SIZE = 256 * 1024
#: The server's recv_timeout for this run (slowloris get 408 after it).
RECV_TIMEOUT = 5.0
#: Seconds between two bytes of a slowloris head.
SLOWLORIS_BYTE_INTERVAL = 0.5
#: Samples averaged at each end of the post-warm-up RSS series.
RSS_WINDOW_SAMPLES = 5
#: Warm-up bounds (seconds).
MAX_WARMUP = 60.0
#: Seconds the load generators may overrun the end before they are killed.
GENERATOR_GRACE = 30.0

#: Connections per class (one process per class).
DEFAULT_CONNECTIONS = {
    "keepalive": 8,
    "pipelined": 4,
    "per_request": 4,
    "post": 6,
    "slowloris": 24,
    "garbage": 3,
}
WELL_BEHAVED = ("keepalive", "pipelined", "per_request", "post", "wrk")

MALFORMED_HEADS: Tuple[bytes, ...] = (
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabc\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n folded: yes\r\n\r\n",
    b"GET / HTTP/1.1\nHost: x\n\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad\x00Header: v\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"G" * 100 + b" / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"v" * 20000 + b"\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nna me: v\r\n\r\n",
    b"\r\n\r\n\r\n",
)


class ClientError(Exception):
    """A well-behaved client got something other than the expected answer."""


# --------------------------------------------------------------------------- wire


@dataclass
class Response:
    """One parsed response."""

    status: int
    headers: Dict[str, str]
    body: bytes


async def read_response(reader: asyncio.StreamReader, timeout: float = IO_TIMEOUT) -> Response:
    """Read one Content-Length-framed HTTP/1.1 response; raise ClientError on anything else."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except asyncio.IncompleteReadError as exc:
        raise ClientError(f"connection closed before a response head ({len(exc.partial)} bytes read)") from None
    except asyncio.LimitOverrunError:
        raise ClientError("response head too long") from None
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or parts[0] != b"HTTP/1.1" or not parts[1].isdigit():
        raise ClientError(f"bad status line {lines[0][:80]!r}")
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ClientError(f"bad header line {line[:80]!r}")
        key = name.decode("latin-1").lower()
        if key in headers:
            raise ClientError(f"duplicate header {key}")
        headers[key] = value.strip().decode("latin-1")
    length = headers.get("content-length")
    if length is None or not length.isdigit():
        raise ClientError(f"response without a valid Content-Length: {head[:200]!r}")
    try:
        body = await asyncio.wait_for(reader.readexactly(int(length)), timeout)
    except asyncio.IncompleteReadError as exc:
        raise ClientError(f"body cut at {len(exc.partial)} of {length} bytes") from None
    return Response(int(parts[1]), headers, body)


async def expect_eof(reader: asyncio.StreamReader, timeout: float = IO_TIMEOUT) -> None:
    """The server must close after the response (no further bytes)."""
    extra = await asyncio.wait_for(reader.read(1), timeout)
    if extra:
        raise ClientError(f"bytes after a final response: {extra!r}")


def check(resp: Response, status: int, body: bytes, *, close: Optional[bool] = False) -> None:
    """Raise ClientError unless the response is ``status`` with exactly ``body``.

    ``close``: True requires ``Connection: close``, False forbids it, None accepts
    either (an HTTP/1.0 answer may say it or not).
    """
    if resp.status != status:
        raise ClientError(f"status {resp.status}, expected {status}; body {resp.body[:100]!r}")
    if resp.body != body:
        raise ClientError(f"body {resp.body[:80]!r} ({len(resp.body)} bytes), expected {body[:80]!r} "
                          f"({len(body)} bytes)")
    conn = resp.headers.get("connection", "").lower()
    if close and conn != "close":
        raise ClientError("missing Connection: close on a final response")
    if close is False and conn == "close":
        raise ClientError("unexpected Connection: close on a keep-alive response")


def request_get(target: str, *, close: bool = False, http10: bool = False) -> bytes:
    """Bytes of a GET request."""
    if http10:
        return f"GET {target} HTTP/1.0\r\nHost: soak\r\n\r\n".encode()
    extra = "Connection: close\r\n" if close else ""
    return f"GET {target} HTTP/1.1\r\nHost: soak\r\nUser-Agent: soak\r\n{extra}\r\n".encode()


def request_post_cl(body: bytes) -> bytes:
    """Bytes of a POST /echo with Content-Length."""
    return (b"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def request_post_chunked(body: bytes, rng: random.Random) -> List[bytes]:
    """A chunked POST /echo as a list of pieces to write separately."""
    pieces = [b"POST /echo HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\n"]
    pos = 0
    while pos < len(body):
        size = rng.randint(1, max(1, min(len(body) - pos, 16384)))
        ext = b";ext=1" if rng.random() < 0.1 else b""
        pieces.append(b"%x%s\r\n%s\r\n" % (size, ext, body[pos:pos + size]))
        pos += size
    pieces.append(b"0\r\n\r\n")
    return pieces


def random_dynamic(rng: random.Random) -> Tuple[str, bytes]:
    """A dynamic-route target and the body it must answer."""
    ident = rng.randrange(10**9)
    q = rng.choice(("a", "bb", "x-y", "42", "soak"))
    return f"/item/{ident}?q={q}", f"item {ident} q={q}".encode()


# --------------------------------------------------------------------------- client classes


@dataclass
class ClassStats:
    """Counters of one client class."""

    requests: int = 0
    errors: int = 0
    error_samples: List[str] = field(default_factory=list)
    outcomes: Dict[str, int] = field(default_factory=dict)

    def error(self, where: str, exc: BaseException) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERRORS_KEPT:
            self.error_samples.append(f"{time.strftime('%H:%M:%S')} {where}: {type(exc).__name__}: {exc}")

    def outcome(self, name: str) -> None:
        self.outcomes[name] = self.outcomes.get(name, 0) + 1


async def open_conn(port: int) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port, limit=1 << 20), IO_TIMEOUT)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def close_conn(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), IO_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        pass


async def keepalive_client(port: int, deadline: float, stats: ClassStats, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        writer = None
        try:
            reader, writer = await open_conn(port)
            # Reconnect now and then (well before keepalive_timeout) to mix in new connections.
            for _ in range(rng.randint(500, 5000)):
                if time.monotonic() >= deadline:
                    break
                kind = rng.random()
                if kind < 0.4:
                    writer.write(request_get("/static"))
                    expected = b"static-ok"
                elif kind < 0.8:
                    target, expected = random_dynamic(rng)
                    writer.write(request_get(target))
                else:
                    expected = rng.randbytes(rng.randint(0, 2048))
                    writer.write(request_post_cl(expected))
                await writer.drain()
                check(await read_response(reader), 200, expected)
                stats.requests += 1
        except (ClientError, OSError, asyncio.TimeoutError) as exc:
            stats.error("keepalive", exc)
            await asyncio.sleep(0.05)
        finally:
            if writer is not None:
                await close_conn(writer)


async def pipelined_client(port: int, deadline: float, stats: ClassStats, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        writer = None
        try:
            reader, writer = await open_conn(port)
            for _ in range(rng.randint(100, 1000)):
                if time.monotonic() >= deadline:
                    break
                batch: List[bytes] = []
                expected: List[bytes] = []
                for _ in range(PIPELINE_DEPTH):
                    if rng.random() < 0.3:
                        batch.append(request_get("/static"))
                        expected.append(b"static-ok")
                    else:
                        target, body = random_dynamic(rng)
                        batch.append(request_get(target))
                        expected.append(body)
                writer.write(b"".join(batch))
                await writer.drain()
                for body in expected:
                    check(await read_response(reader), 200, body)
                    stats.requests += 1
        except (ClientError, OSError, asyncio.TimeoutError) as exc:
            stats.error("pipelined", exc)
            await asyncio.sleep(0.05)
        finally:
            if writer is not None:
                await close_conn(writer)


async def per_request_client(port: int, deadline: float, stats: ClassStats, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        writer = None
        try:
            reader, writer = await open_conn(port)
            http10 = rng.random() < 0.25
            if rng.random() < 0.5:
                target, expected = "/static", b"static-ok"
            else:
                target, expected = random_dynamic(rng)
            writer.write(request_get(target, close=True, http10=http10))
            await writer.drain()
            resp = await read_response(reader)
            check(resp, 200, expected, close=None if http10 else True)
            await expect_eof(reader)
            stats.requests += 1
        except (ClientError, OSError, asyncio.TimeoutError) as exc:
            stats.error("per_request", exc)
            await asyncio.sleep(0.05)
        finally:
            if writer is not None:
                await close_conn(writer)


async def post_client(port: int, deadline: float, stats: ClassStats, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        writer = None
        try:
            reader, writer = await open_conn(port)
            for _ in range(rng.randint(200, 2000)):
                if time.monotonic() >= deadline:
                    break
                size = rng.choice((0, 1, rng.randint(2, 1024), rng.randint(1024, MAX_POST_BODY)))
                body = rng.randbytes(size)
                if rng.random() < 0.5:
                    writer.write(request_post_cl(body))
                    stats.outcome("content-length")
                else:
                    for piece in request_post_chunked(body, rng):
                        writer.write(piece)
                        await writer.drain()
                    stats.outcome("chunked")
                await writer.drain()
                check(await read_response(reader), 200, body)
                stats.requests += 1
        except (ClientError, OSError, asyncio.TimeoutError) as exc:
            stats.error("post", exc)
            await asyncio.sleep(0.05)
        finally:
            if writer is not None:
                await close_conn(writer)


async def slowloris_client(port: int, deadline: float, stats: ClassStats, seed: int) -> None:
    """Trickle an endless head; the server must answer 408 or close, then we start again."""
    rng = random.Random(seed)
    await asyncio.sleep(rng.random() * SLOWLORIS_BYTE_INTERVAL * 4)
    head = b"GET /static HTTP/1.1\r\nHost: soak\r\n" + b"".join(
        b"X-Slow-%d: %d\r\n" % (i, rng.randrange(10**6)) for i in range(2000))
    while time.monotonic() < deadline:
        writer = None
        try:
            reader, writer = await open_conn(port)
            pos = 0
            read_task = asyncio.ensure_future(reader.read(65536))
            answer = b""
            while time.monotonic() < deadline and pos < len(head):
                writer.write(head[pos:pos + 1])
                pos += 1
                try:
                    await writer.drain()
                except OSError:
                    break  # the server closed (after its 408); read what it sent below
                done, _ = await asyncio.wait({read_task}, timeout=SLOWLORIS_BYTE_INTERVAL)
                if done:
                    break
            if time.monotonic() >= deadline and not read_task.done():
                read_task.cancel()
                stats.outcome("still trickling at the end")
                continue
            try:
                answer = await asyncio.wait_for(read_task, IO_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as exc:
                stats.outcome(f"closed without answer ({type(exc).__name__})")
                continue
            if answer.startswith(b"HTTP/1.1 408 "):
                stats.outcome("408")
                stats.requests += 1
            elif not answer:
                stats.outcome("closed without answer")
            else:
                stats.error("slowloris", ClientError(f"unexpected answer {answer[:60]!r}"))
        except (OSError, asyncio.TimeoutError) as exc:
            stats.error("slowloris", exc)
            await asyncio.sleep(0.2)
        finally:
            if writer is not None:
                await close_conn(writer)


def _status_of(answer: bytes) -> Optional[int]:
    if answer.startswith(b"HTTP/1.1 ") and answer[9:12].isdigit():
        return int(answer[9:12])
    return None


async def garbage_client(port: int, deadline: float, stats: ClassStats, seed: int) -> None:
    """Send hostile input; any answer must be an error status (never 1xx/2xx/3xx)."""
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        writer = None
        kind = rng.choice(("random", "malformed", "cut", "reset", "leave-mid-response"))
        try:
            reader, writer = await open_conn(port)
            if kind == "random":
                payload = rng.randbytes(rng.randint(1, 4096))
            elif kind == "malformed":
                payload = rng.choice(MALFORMED_HEADS)
            elif kind == "cut":
                full = request_post_cl(rng.randbytes(rng.randint(10, 4096)))
                payload = full[:rng.randint(1, len(full) - 1)]
            elif kind == "reset":
                payload = request_post_cl(rng.randbytes(rng.randint(10, 65536)))
            else:
                payload = request_get("/big")
            writer.write(payload)
            try:
                await writer.drain()
            except OSError:  # the server refused the input and closed before taking all of it
                stats.outcome(f"{kind}: closed while sending")
                continue
            if kind in ("cut", "reset", "leave-mid-response"):
                if kind == "leave-mid-response":
                    await asyncio.wait_for(reader.readexactly(rng.randint(1, 4096)), IO_TIMEOUT)
                sock = writer.get_extra_info("socket")
                if kind != "cut" and sock is not None:  # RST instead of FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                stats.outcome(kind)
                continue
            try:
                answer = await asyncio.wait_for(reader.read(200), RECV_TIMEOUT + IO_TIMEOUT)
            except OSError:
                answer = b""
            status = _status_of(answer)
            if status is not None and status >= 400:
                stats.outcome(f"{kind}: {status}")
            elif not answer:
                stats.outcome(f"{kind}: closed")
            else:
                stats.error("garbage", ClientError(f"{kind} input {payload[:40]!r} answered {answer[:60]!r}"))
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
            stats.error(f"garbage {kind}", exc)
            await asyncio.sleep(0.2)
        finally:
            if writer is not None:
                await close_conn(writer)


CLIENTS = {
    "keepalive": keepalive_client,
    "pipelined": pipelined_client,
    "per_request": per_request_client,
    "post": post_client,
    "slowloris": slowloris_client,
    "garbage": garbage_client,
}


def run_class(name: str, port: int, connections: int, seconds: float, seed: int,
              results: "multiprocessing.Queue[Dict[str, Any]]") -> None:
    """Process entry: run ``connections`` clients of class ``name`` for ``seconds``."""
    stats = ClassStats()
    deadline = time.monotonic() + seconds

    async def main() -> None:
        fn = CLIENTS[name]
        await asyncio.gather(*(fn(port, deadline, stats, seed * 1000 + i) for i in range(connections)))

    started = time.monotonic()
    try:
        asyncio.run(main())
    except BaseException as exc:  # noqa: BLE001 - report whatever it was; never hang the parent
        stats.error(f"{name} generator crashed", exc)
    results.put({"name": name, "requests": stats.requests, "errors": stats.errors,
                 "error_samples": stats.error_samples, "outcomes": stats.outcomes,
                 "seconds": time.monotonic() - started})


# --------------------------------------------------------------------------- server processes


def children_of(pid: int) -> List[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid and fields[0] != b"Z":
            found.append(int(entry))
    return sorted(found)


def rss_kib(pid: int) -> Optional[int]:
    """Resident set size of ``pid`` in KiB, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[-1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(workers: int, log_path: Path, extra_env: Optional[Dict[str, str]] = None) -> ServerProcess:
    """Start soak_app.py on a free port (compiling into the shared test JIT cache)."""
    port = free_port()
    # The JIT cache: $HYPERSONIC_CACHE_DIR when set (tests/sanitize.sh sets its own), else the tests' shared one.
    env = {"SOAK_RECV_TIMEOUT": str(RECV_TIMEOUT),
           "HYPERSONIC_CACHE_DIR": os.environ.get("HYPERSONIC_CACHE_DIR") or str(TEST_CACHE_DIR)}
    env.update(extra_env or {})
    server = ServerProcess([sys.executable, str(APP_SCRIPT), str(port), str(workers)], port,
                           log_path=log_path, env=env)
    return server.start()


def wait_workers(server: ServerProcess, count: int, limit: float = 30.0) -> List[int]:
    deadline = time.monotonic() + limit
    pids: List[int] = []
    while time.monotonic() < deadline:
        pids = children_of(server.pid) if count > 1 else [server.pid]
        if len(pids) == count:
            return pids
        time.sleep(0.1)
    raise RuntimeError(f"expected {count} workers, found {pids}")


# --------------------------------------------------------------------------- the run


def rss_growth(samples: List[Tuple[float, int]], warmup: float) -> Dict[str, Any]:
    """Growth of an RSS series after the warm-up: mean of the last N vs the first N samples."""
    after = [kib for t, kib in samples if t >= warmup]
    if len(after) < 2 * RSS_WINDOW_SAMPLES:
        window = max(1, len(after) // 2)
    else:
        window = RSS_WINDOW_SAMPLES
    if not after:
        return {"samples_after_warmup": 0}
    start = sum(after[:window]) / window
    end = sum(after[-window:]) / window
    return {
        "samples_after_warmup": len(after),
        "start_kib": round(start),
        "end_kib": round(end),
        "max_kib": max(after),
        "min_kib": min(after),
        "growth_percent": round(100.0 * (end - start) / start, 2) if start else None,
    }


def start_wrk(port: int, seconds: float, connections: int, log_dir: Path) -> "subprocess.Popen[bytes]":
    """Start the wrk class; its output goes to log_dir/soak-wrk.log."""
    wrk = shutil.which("wrk")
    assert wrk is not None
    argv = [wrk, f"-t{WRK_THREADS}", f"-c{max(WRK_THREADS, connections)}", f"-d{max(1, round(seconds))}s",
            f"--timeout={WRK_TIMEOUT_SECONDS}s", "-s", str(WRK_SCRIPT), f"http://{HOST}:{port}/"]
    with open(log_dir / "soak-wrk.log", "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def wrk_report(proc: "subprocess.Popen[bytes]", log_dir: Path, seconds: float) -> Dict[str, Any]:
    """Wait for wrk and turn its SOAK_WRK line into a class report."""
    item: Dict[str, Any] = {"name": "wrk", "requests": 0, "errors": 0, "error_samples": [], "outcomes": {},
                            "seconds": seconds}
    try:
        proc.wait(timeout=GENERATOR_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        item["errors"] = 1
        item["error_samples"].append("wrk did not finish")
        return item
    text = (log_dir / "soak-wrk.log").read_text(errors="replace")
    match = re.search(r"SOAK_WRK ok=(\d+) bad=(\d+) connect=(\d+) read=(\d+) write=(\d+) status=(\d+) "
                      r"timeout=(\d+) sample=(.*)", text)
    if proc.returncode != 0 or match is None:
        item["errors"] = 1
        item["error_samples"].append(f"wrk exited {proc.returncode}: {text[-500:]}")
        return item
    ok, bad, connect, read, write, status, timeout = (int(g) for g in match.groups()[:7])
    item["requests"] = ok
    item["errors"] = bad + connect + read + write + status + timeout
    for name, value in (("bad response", bad), ("connect", connect), ("read", read), ("write", write),
                        ("non-2xx", status), ("timeout", timeout)):
        if value:
            item["error_samples"].append(f"wrk {name} errors: {value}")
    if bad:
        item["error_samples"].append(f"first bad response: {match.group(8)}")
    return item


def soak(seconds: float, workers: int, warmup: float, sample_every: float, growth_limit: float,
         connections: Dict[str, int], log_dir: Path, seed: int) -> Dict[str, Any]:
    """Run the soak; return the report (``report["ok"]`` is the verdict)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    server = start_server(workers, log_dir / "soak-server.log")
    failures: List[str] = []
    report: Dict[str, Any] = {"seconds": seconds, "workers": workers, "warmup": warmup,
                              "connections": connections, "port": server.port}
    procs: List[Any] = []  # multiprocessing processes of the fork context
    wrk_proc: "Optional[subprocess.Popen[bytes]]" = None
    try:
        worker_pids = wait_workers(server, workers)
        watched = ([server.pid] if workers > 1 else []) + worker_pids
        report["worker_pids"] = worker_pids
        ctx = multiprocessing.get_context("fork")
        results: "multiprocessing.Queue[Dict[str, Any]]" = ctx.Queue()
        for index, (name, count) in enumerate(connections.items()):
            if count <= 0:
                continue
            if name == "wrk":
                wrk_proc = start_wrk(server.port, seconds, count, log_dir)
                continue
            proc = ctx.Process(target=run_class, args=(name, server.port, count, seconds, seed + index, results),
                               name=f"soak-{name}", daemon=True)
            proc.start()
            procs.append(proc)
        started = time.monotonic()
        cpu_start = sum(cpu_seconds(p) for p in watched)
        series: Dict[int, List[Tuple[float, int]]] = {pid: [] for pid in watched}
        total_series: List[Tuple[float, int]] = []
        pid_changes: List[str] = []
        while time.monotonic() - started < seconds:
            time.sleep(min(sample_every, max(0.0, seconds - (time.monotonic() - started))))
            now = time.monotonic() - started
            if not server.alive():
                failures.append(f"server exited with {server.proc.returncode if server.proc else '?'} during the run")
                break
            current = children_of(server.pid) if workers > 1 else [server.pid]
            if current != worker_pids:
                pid_changes.append(f"t={now:.0f}s workers {worker_pids} -> {current}")
                worker_pids = current
            total = 0
            for pid in watched:
                kib = rss_kib(pid)
                if kib is not None:
                    series[pid].append((now, kib))
                    if pid in worker_pids:
                        total += kib
            total_series.append((now, total))
        elapsed = time.monotonic() - started
        cpu_used = sum(cpu_seconds(p) for p in watched if rss_kib(p) is not None) - cpu_start
        class_reports: Dict[str, Dict[str, Any]] = {}
        for _ in procs:
            try:
                report_item: Dict[str, Any] = results.get(timeout=GENERATOR_GRACE)
            except queue.Empty:
                failures.append("a load generator did not report")
                break
            class_reports[report_item["name"]] = report_item
        for generator in procs:
            generator.join(timeout=5)
        if wrk_proc is not None:
            class_reports["wrk"] = wrk_report(wrk_proc, log_dir, seconds)
            wrk_proc = None
        report["classes"] = class_reports
        report["elapsed"] = round(elapsed, 1)
        report["server_cpu_seconds"] = round(cpu_used, 1)
        report["pid_changes"] = pid_changes
        if pid_changes:
            failures.append("worker PIDs changed (a worker died): " + "; ".join(pid_changes))
        for name in connections:
            if connections[name] <= 0:
                continue
            item = class_reports.get(name)
            if item is None:
                failures.append(f"{name}: no report")
                continue
            if name in WELL_BEHAVED or name in ("slowloris", "garbage"):
                if item["errors"]:
                    failures.append(f"{name}: {item['errors']} errors, e.g. {item['error_samples'][:3]}")
            if name in WELL_BEHAVED and item["requests"] == 0:
                failures.append(f"{name}: no request served")
        rss = {"workers": rss_growth(total_series, warmup)}
        for pid, samples in series.items():
            role = "supervisor" if (workers > 1 and pid == server.pid) else f"worker {pid}"
            rss[role] = rss_growth(samples, warmup)
        report["rss"] = rss
        report["rss_series_workers"] = [(round(t, 1), kib) for t, kib in total_series]
        growth = rss["workers"].get("growth_percent")
        if growth is None:
            failures.append("not enough RSS samples after the warm-up")
        elif growth >= growth_limit:
            failures.append(f"RSS grew {growth}% after the warm-up (limit {growth_limit}%)")
        # The server still answers after all that, and stops cleanly.
        try:
            with socket.create_connection((HOST, server.port), timeout=IO_TIMEOUT) as sock:
                sock.sendall(request_get("/static", close=True))
                answer = b""
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
            if not answer.startswith(b"HTTP/1.1 200 ") or not answer.endswith(b"static-ok"):
                failures.append(f"after the run, /static answered {answer[:80]!r}")
        except OSError as exc:
            failures.append(f"after the run, /static failed: {exc}")
    finally:
        if wrk_proc is not None and wrk_proc.poll() is None:
            wrk_proc.kill()
            wrk_proc.wait()
        for generator in procs:
            if generator.is_alive():
                generator.kill()
                generator.join(timeout=5)
        code = server.stop(signal.SIGTERM)
    report["exit_code"] = code
    if code != 0:
        failures.append(f"server exit code after SIGTERM: {code}")
    report["failures"] = failures
    report["ok"] = not failures
    return report


def summary(report: Dict[str, Any]) -> str:
    """Human-readable summary of a report."""
    out = [f"soak: {report['elapsed']}s, {report['workers']} workers, port {report['port']}, "
           f"server CPU {report.get('server_cpu_seconds')}s"]
    for name, item in report.get("classes", {}).items():
        rate = item["requests"] / report["elapsed"] if report["elapsed"] else 0
        line = f"  {name:12s} requests {item['requests']:>9d} ({rate:8.0f}/s)  errors {item['errors']}"
        if item["outcomes"]:
            line += "  " + ", ".join(f"{k}={v}" for k, v in sorted(item["outcomes"].items()))
        out.append(line)
        for sample in item["error_samples"][:5]:
            out.append(f"      {sample}")
    total = sum(item["requests"] for name, item in report.get("classes", {}).items() if name in WELL_BEHAVED)
    out.append(f"  well-behaved requests: {total} ({total / report['elapsed']:.0f}/s)")
    for role, figures in report.get("rss", {}).items():
        out.append(f"  RSS {role:14s} after warm-up ({report['warmup']:.0f}s): {figures}")
    out.append(f"  worker PID changes: {report.get('pid_changes') or 'none'}; exit code {report.get('exit_code')}")
    out.append("PASS" if report["ok"] else "FAIL:\n  " + "\n  ".join(report["failures"]))
    return "\n".join(out)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=None, help="duration in minutes (default 10)")
    length.add_argument("--seconds", type=float, default=None, help="duration in seconds")
    parser.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds before RSS growth is measured (default 20%% of the run, at most 60)")
    parser.add_argument("--sample", type=float, default=None,
                        help="seconds between RSS samples (default 2, 1 for runs under a minute)")
    parser.add_argument("--rss-growth-limit", type=float, default=5.0, help="percent (default 5)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every class's connection count")
    parser.add_argument("--no-wrk", action="store_true", help="leave out the wrk class even if wrk is installed")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time-based, printed)")
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp") / f"hypersonic-soak-{os.getuid()}",
                        help="where the server's log goes")
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 60.0 * (args.minutes if args.minutes is not None else 10.0)
    if args.seconds <= 0:
        parser.error("--minutes/--seconds must be > 0")
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.warmup is None:
        args.warmup = min(MAX_WARMUP, 0.2 * args.seconds)
    if args.sample is None:
        args.sample = 1.0 if args.seconds < 60 else 2.0
    if args.seed is None:
        args.seed = int(time.time())
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    connections = {name: max(1, round(count * args.scale)) for name, count in DEFAULT_CONNECTIONS.items()}
    if not args.no_wrk and shutil.which("wrk"):
        connections["wrk"] = max(1, round(WRK_CONNECTIONS * args.scale))
    elif not args.no_wrk:
        print("soak: wrk not found on PATH; running without the wrk class", flush=True)
    print(f"soak: {args.seconds:.0f}s, seed {args.seed}, connections {connections}", flush=True)
    report = soak(args.seconds, args.workers, args.warmup, args.sample, args.rss_growth_limit,
                  connections, args.log_dir, args.seed)
    report["seed"] = args.seed
    report["command"] = " ".join([os.path.basename(sys.executable), "scripts/soak.py", *(argv or sys.argv[1:])])
    print(summary(report), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
