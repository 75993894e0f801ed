#!/usr/bin/env python3
"""Leak check of the server's C: run scripts/leak_app.py under LeakSanitizer (or
valgrind), drive thousands of requests of every kind through it, and report the
leaks whose allocation stack has a frame in a JIT module (``_hs_*``).

Why only those: CPython keeps memory alive at exit by design (interned strings,
static types, arenas), so a raw LSan/valgrind report on a Python process is
thousands of lines of noise. A block allocated from our code that nothing
points to any more is ours: a missing ``free`` or a missing ``Py_DECREF`` (with
``PYTHONMALLOC=malloc`` every Python object is a malloc block, so a leaked
reference shows up as an unreachable block allocated under our frame).

Modes:

* ``--tool lsan`` (default): the module is JIT-built with
  ``-fsanitize=address,undefined -shared-libasan`` (clang), the ASan runtime is
  preloaded into Python. LSan runs twice: once while the server is still up,
  after all traffic (``POST /__leakcheck``: steady-state leaks, the ones that
  grow with traffic), and once at exit after SIGTERM and the drain.
* ``--tool valgrind``: plain build, ``valgrind --leak-check=full`` on the
  server process; "definitely lost" records with a ``_hs_`` frame count.
  Slow (about 30x): use ``--per-kind 200``.

Besides leaks it checks that every response was the expected one, that the
server's open connections and file descriptors return to their idle values
after the traffic (no fd leak), and that no ASan/UBSan error was reported.

Usage::

    .venv/bin/python scripts/leak_check.py [--tool lsan|valgrind] [--per-kind N] [--keep-logs]

Exit status 0 when clean, 1 on a leak/error/mismatch, 2 when the tool is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
APP = Path(__file__).resolve().parent / "leak_app.py"
#: Seconds any single socket operation may block.
IO_TIMEOUT = 30.0
#: Seconds the server may take to start (the first run compiles the C with sanitizers).
STARTUP_TIMEOUT = 300.0
#: Seconds the server may take to exit after SIGTERM (valgrind's leak scan is slow).
STOP_TIMEOUT = 300.0
#: Seconds to wait for connections to be closed by the server after the traffic.
SETTLE_TIMEOUT = 20.0
SANITIZER_FLAGS = "-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g"
BIG_BODY_SIZE = 1024 * 1024  # scripts/leak_app.py's /big
#: Client receive buffer for the clients that must make the server's writes partial.
SMALL_RCVBUF = 4096
#: How many clients read a 1 MiB response through that small window.
SLOW_READERS = 8


class CheckFailed(Exception):
    """A response was not the expected one."""


# --------------------------------------------------------------------------
# A small strict HTTP/1.1 client (Content-Length framed responses only)
# --------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: Dict[bytes, bytes]
    body: bytes


class Conn:
    """One client connection that reads exactly framed responses."""

    def __init__(self, port: int, rcvbuf: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # a small receive window makes the server's writes partial (write queue, EV_WRITE)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.connect((HOST, port))
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise CheckFailed(f"server closed the connection mid-response (buffered {self.buf[:200]!r})")
        self.buf += chunk

    def read_reply(self) -> Reply:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        match = re.match(rb"HTTP/1\.1 (\d{3}) ", lines[0] + b" ")
        if not match:
            raise CheckFailed(f"bad status line {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        status = int(match.group(1))
        if 100 <= status < 200:
            return self.read_reply()
        if status in (204, 304):  # no content, whatever the fields say (RFC 9112 6.3)
            return Reply(status, headers, b"")
        length = int(headers.get(b"content-length", b"-1"))
        if length < 0:
            raise CheckFailed(f"response without Content-Length: {head!r}")
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return Reply(status, headers, body)

    def read_eof(self) -> bytes:
        """Read until the server closes (bounded by the socket timeout)."""
        data = self.buf
        self.buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """Close with RST (SO_LINGER 0), as a crashing client would."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()


def expect(reply: Reply, status: int, body: Optional[bytes] = None, what: str = "") -> None:
    if reply.status != status or (body is not None and reply.body != body):
        raise CheckFailed(f"{what}: expected {status} {body!r:.80}, got {reply.status} {reply.body!r:.200}")


def request(method: str, target: str, body: bytes = b"", headers: Tuple[str, ...] = (), close: bool = False) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: leak.test", *headers]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(body: bytes, size: int) -> bytes:
    out = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                   for i in range(0, len(body), size))
    return out + b"0\r\nX-Trailer: t\r\n\r\n"


# --------------------------------------------------------------------------
# Traffic: each kind runs `n` requests (or connections) and checks every answer
# --------------------------------------------------------------------------

BODY_SIZES = (0, 1, 100, 5000, 70000)
MALFORMED: List[Tuple[bytes, int]] = [
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"v" * 20000 + b"\r\n\r\n", 431),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\n", 413),
    (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    (b"GET / HTTP/1.1\nHost: t\n\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", 400),
]


def kind_static_keepalive(port: int, n: int) -> None:
    conn = Conn(port)
    for i in range(n):
        conn.send(request("GET", "/health" if i % 2 else "/static-json"))
        reply = conn.read_reply()
        expect(reply, 200, b"OK" if i % 2 else None, "static")
    conn.close()


def kind_dynamic_keepalive(port: int, n: int) -> None:
    conn = Conn(port)
    for i in range(n):
        conn.send(request("GET", f"/users/{i}?q=v{i}&r=%20x", headers=(f"X-Test: agent-{i}",
                                                                     f"Cookie: a=1; session=s{i}")))
        reply = conn.read_reply()
        expect(reply, 200, None, "dynamic")
        data = json.loads(reply.body)
        if data["id"] != str(i) or data["session"] != f"s{i}" or data["q"] != f"v{i}":
            raise CheckFailed(f"dynamic: wrong echo {data}")
    conn.close()


def kind_post_content_length(port: int, n: int) -> None:
    conn = Conn(port)
    for i in range(n):
        body = bytes([65 + i % 26]) * BODY_SIZES[i % len(BODY_SIZES)]
        conn.send(request("POST", "/echo", body))
        expect(conn.read_reply(), 200, body, "post CL")
    conn.close()


def kind_post_chunked(port: int, n: int) -> None:
    conn = Conn(port)
    for i in range(n):
        body = bytes([97 + i % 26]) * BODY_SIZES[i % len(BODY_SIZES)]
        head = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        conn.send(head + chunked(body, 1 + (i * 7919) % 9000))
        expect(conn.read_reply(), 200, body, "post chunked")
    conn.close()


def kind_json_form(port: int, n: int) -> None:
    conn = Conn(port)
    for i in range(n):
        if i % 2:
            payload = json.dumps({"i": i, "s": "x" * (i % 50)}).encode()
            conn.send(request("POST", "/json", payload, headers=("Content-Type: application/json",)))
            expect(conn.read_reply(), 200, None, "json")
        else:
            conn.send(request("POST", "/form", f"a={i}&b=%41%42&c=".encode(),
                              headers=("Content-Type: application/x-www-form-urlencoded",)))
            expect(conn.read_reply(), 200, None, "form")
    conn.close()


def kind_result_types(port: int, n: int) -> None:
    conn = Conn(port)
    cases = [("/response", 201, b"created"), ("/tuple", 202, b"accepted"), ("/boom", 500, None),
             ("/nowhere", 404, None)]
    for i in range(n):
        target, status, body = cases[i % len(cases)]
        conn.send(request("GET", target))
        expect(conn.read_reply(), status, body, target)
    conn.close()


def kind_pipelined(port: int, n: int) -> None:
    batch = [request("GET", "/health"), request("GET", "/users/p?q=1"), request("POST", "/echo", b"pipe"),
             b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"chunky", 2)]
    conn = Conn(port)
    for _ in range(max(1, n // 16)):
        conn.send(b"".join(batch * 4))
        for j in range(16):
            reply = conn.read_reply()
            expect(reply, 200, None, f"pipelined #{j}")
    conn.close()


def kind_connection_per_request(port: int, n: int) -> None:
    for i in range(n):
        conn = Conn(port)
        conn.send(request("GET", "/health" if i % 2 else f"/users/{i}", close=True))
        expect(conn.read_reply(), 200, None, "conn per request")
        if conn.read_eof():
            raise CheckFailed("bytes after a Connection: close response")
        conn.close()


def kind_malformed(port: int, n: int) -> None:
    for i in range(n):
        payload, status = MALFORMED[i % len(MALFORMED)]
        conn = Conn(port)
        try:
            conn.send(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = conn.read_eof()
        conn.close()
        if not data.startswith(b"HTTP/1.1 %d " % status):
            raise CheckFailed(f"malformed #{i % len(MALFORMED)}: expected {status}, got {data[:100]!r}")


def kind_slow_and_aborted(port: int, n: int) -> None:
    """Clients that go away at every stage: before sending, mid-head, mid-body, with RST,
    and without reading a large response (the server's write fails mid-queue); and one
    that reads a large response through a small window (writes wait and resume)."""
    for i in range(n):
        stage = i % 7
        if stage == 6 and i // 7 >= SLOW_READERS:
            stage = 0  # slow readers take about a second each: a few suffice
        conn = Conn(port, rcvbuf=SMALL_RCVBUF if stage >= 4 else 0)
        if stage == 0:
            conn.close()
        elif stage == 1:
            conn.send(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Partial: ")
            conn.close()
        elif stage == 2:
            conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000)
            conn.close()
        elif stage == 3:
            conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n" + b"y" * 100)
            conn.reset()
        elif stage == 4:
            conn.send(request("GET", "/big"))
            conn.reset()
        elif stage == 5:
            conn.send(request("GET", "/big") * 3)
            conn.sock.recv(1000)
            conn.close()
        else:  # reads the whole 1 MiB slowly, in small pieces: the server's write waits and resumes
            conn.send(request("GET", "/big", close=True))
            data = conn.read_eof()
            if not data.startswith(b"HTTP/1.1 200 ") or len(data) < BIG_BODY_SIZE:
                raise CheckFailed(f"slow reader got {len(data)} bytes")


def kind_expect_continue(port: int, n: int) -> None:
    conn = Conn(port)
    for i in range(n):
        body = b"c" * (1 + i % 300)
        conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        while b"\r\n\r\n" not in conn.buf:
            conn._fill()
        if conn.buf.startswith(b"HTTP/1.1 100 "):
            conn.buf = conn.buf.split(b"\r\n\r\n", 1)[1]
        conn.send(body)
        expect(conn.read_reply(), 200, body, "100-continue")
    conn.close()


def kind_static_files(port: int, n: int) -> None:
    """A static mount: the baked file from C (200, gzip, 304), a range (the Python handler),
    the large file (sendfile), and a download abandoned half way."""
    small = b"small compressible line\n" * 100  # scripts/leak_app.py SMALL_FILE
    big = bytes(range(256)) * 1200
    conn = Conn(port)
    conn.send(request("GET", "/files/small.txt"))
    first = conn.read_reply()
    expect(first, 200, small, "baked file")
    etag = first.headers[b"etag"].decode()
    for i in range(n):
        step = i % 5
        if step == 0:
            conn.send(request("GET", "/files/small.txt"))
            expect(conn.read_reply(), 200, small, "baked file")
        elif step == 1:
            conn.send(request("GET", "/files/small.txt", headers=("Accept-Encoding: gzip",)))
            reply = conn.read_reply()
            expect(reply, 200, None, "gzip file")
            if reply.headers.get(b"content-encoding") != b"gzip":
                raise CheckFailed(f"gzip file: no Content-Encoding in {reply.headers!r}")
        elif step == 2:
            conn.send(request("GET", "/files/small.txt", headers=(f"If-None-Match: {etag}",)))
            expect(conn.read_reply(), 304, b"", "304")
        elif step == 3:
            conn.send(request("GET", "/files/small.txt", headers=("Range: bytes=10-19",)))
            expect(conn.read_reply(), 206, small[10:20], "range")
        else:
            conn.send(request("GET", "/files/big.bin"))
            expect(conn.read_reply(), 200, big, "sendfile")
    conn.close()
    for _ in range(max(1, n // 50)):  # abandoned downloads: the file descriptor must be released
        quitter = Conn(port, rcvbuf=SMALL_RCVBUF)
        quitter.send(request("GET", "/files/big.bin"))
        quitter._fill()
        quitter.reset()


def kind_compression_and_hooks(port: int, n: int) -> None:
    conn = Conn(port)
    for i in range(n):
        if i % 2:
            conn.send(request("GET", "/report", headers=("Accept-Encoding: gzip",)))
            reply = conn.read_reply()
            expect(reply, 200, None, "gzip report")
            if reply.headers.get(b"content-encoding") != b"gzip":
                raise CheckFailed("gzip report: not compressed")
        else:
            conn.send(request("GET", "/hooked", headers=(f"X-Tag: t{i}",)))
            reply = conn.read_reply()
            expect(reply, 200, json.dumps({"tag": f"t{i}"}, separators=(",", ":")).encode(), "hooked")
            if reply.headers.get(b"x-tag") != f"t{i}".encode():
                raise CheckFailed("hooked: after-hook header missing")
    conn.close()


def kind_streaming(port: int, n: int) -> None:
    """Streamed (chunked) responses read whole, and clients that leave mid-stream."""
    expected = b"".join(b"chunk %d\n" % i for i in range(20))  # leak_app.py STREAM_CHUNKS
    for i in range(n):
        conn = Conn(port)
        conn.send(request("GET", "/stream", close=True))
        if i % 4 == 3:
            conn._fill()
            conn.reset()  # the client leaves: the stream's writer is told, nothing stays behind
            continue
        raw = conn.read_eof()
        conn.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 ") or b"transfer-encoding: chunked" not in head.lower():
            raise CheckFailed(f"stream: unexpected head {head[:200]!r}")
        data = b""
        while True:
            size_line, _, body = body.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            data, body = data + body[:size], body[size + 2:]
        if data != expected:
            raise CheckFailed(f"stream: body {data[:80]!r}")


KINDS: List[Tuple[str, Callable[[int, int], None], float]] = [
    # (name, function, share of --per-kind: connection-heavy kinds get fewer)
    ("static keep-alive", kind_static_keepalive, 1.0),
    ("dynamic keep-alive", kind_dynamic_keepalive, 1.0),
    ("POST Content-Length", kind_post_content_length, 1.0),
    ("POST chunked", kind_post_chunked, 1.0),
    ("POST JSON/form", kind_json_form, 1.0),
    ("Response/tuple/500/404", kind_result_types, 1.0),
    ("pipelined x16", kind_pipelined, 1.0),
    ("connection per request", kind_connection_per_request, 0.5),
    ("malformed", kind_malformed, 0.5),
    ("slow/aborted clients", kind_slow_and_aborted, 0.25),
    ("Expect: 100-continue", kind_expect_continue, 0.5),
    ("static files (C, 304, gzip, range, sendfile)", kind_static_files, 1.0),
    ("compression and hooks", kind_compression_and_hooks, 1.0),
    ("streaming", kind_streaming, 0.1),
]


# --------------------------------------------------------------------------
# Server process under the tool, report parsing
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def get_json(port: int, target: str) -> Dict[str, int]:
    conn = Conn(port)
    conn.send(request("GET", target, close=True))
    reply = conn.read_reply()
    conn.close()
    expect(reply, 200, None, target)
    return json.loads(reply.body)


def post_text(port: int, target: str) -> str:
    conn = Conn(port)
    conn.send(request("POST", target, close=True))
    reply = conn.read_reply()
    conn.close()
    expect(reply, 200, None, target)
    return reply.body.decode()


def wait_for_port(port: int, proc: "subprocess.Popen[bytes]", timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not listen within {timeout}s")


def lsan_environment(logdir: Path) -> Dict[str, str]:
    clang = shutil.which("clang")
    if clang is None:
        raise FileNotFoundError("clang not found (LSan mode needs clang's shared ASan runtime)")
    runtime = subprocess.run([clang, f"-print-file-name=libclang_rt.asan-{os.uname().machine}.so"],
                             capture_output=True, text=True, check=True).stdout.strip()
    if not os.path.isabs(runtime) or not os.path.exists(runtime):
        raise FileNotFoundError(f"clang's ASan runtime not found ({runtime}); install libclang-rt-dev")
    env = {
        "CC": clang,
        "HYPERSONIC_JIT_CFLAGS": SANITIZER_FLAGS + " -shared-libasan",
        "LD_PRELOAD": os.path.realpath(runtime),
        "PYTHONMALLOC": "malloc",
        # exitcode=0: CPython's own at-exit leaks must not decide; the reports do.
        # fast_unwind_on_malloc=0: CPython has no frame pointers, so the fast unwinder stops
        # inside libpython before reaching the _hs_ frame that called into it.
        "ASAN_OPTIONS": f"detect_leaks=1:exitcode=0:halt_on_error=1:fast_unwind_on_malloc=0:"
                        f"malloc_context_size=12:log_path={logdir}/asan",
        "LSAN_OPTIONS": "exitcode=0:report_objects=0",
        "UBSAN_OPTIONS": f"print_stacktrace=1:halt_on_error=1:log_path={logdir}/ubsan",
    }
    symbolizer = shutil.which("llvm-symbolizer")
    if symbolizer:
        env["ASAN_SYMBOLIZER_PATH"] = symbolizer
    return env


@dataclass
class LeakReport:
    ours: List[str] = field(default_factory=list)  # leak records with a _hs_ frame
    others: int = 0  # CPython's own, ignored
    errors: List[str] = field(default_factory=list)  # ASan/UBSan errors (any frame)


def parse_lsan(logdir: Path) -> LeakReport:
    report = LeakReport()
    for path in sorted(logdir.glob("*")):
        text = path.read_text(errors="replace")
        if re.search(r"ERROR: (AddressSanitizer|UndefinedBehaviorSanitizer)|runtime error:", text):
            report.errors.append(f"{path.name}:\n{text[:6000]}")
        for block in re.split(r"\n\s*\n", text):
            if re.search(r"(Direct|Indirect) leak of", block):
                if "_hs_" in block:
                    report.ours.append(f"{path.name}: {block.strip()}")
                else:
                    report.others += 1
    return report


def parse_valgrind(log: Path) -> LeakReport:
    report = LeakReport()
    text = log.read_text(errors="replace")
    for block in re.split(r"\n==\d+== \n", text):
        if "are definitely lost" in block or "are possibly lost" in block:
            if "_hs_" in block and "definitely lost" in block:
                report.ours.append(block.strip())
            else:
                report.others += 1
        elif re.search(r"Invalid (read|write)|uninitialised|Mismatched free|Invalid free", block) and "_hs_" in block:
            report.errors.append(block.strip())
    return report


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tool", choices=("lsan", "valgrind"), default="lsan")
    parser.add_argument("--per-kind", type=int, default=2000, help="requests per kind of traffic (default 2000)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory (path printed)")
    parser.add_argument("--positive-control", action="store_true",
                        help="also leak on purpose from a JIT module; succeed only if both leaks are found")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the server")
    args = parser.parse_args(argv)
    if args.per_kind < 1:
        parser.error("--per-kind must be >= 1")

    workdir = Path(tempfile.mkdtemp(prefix="hypersonic-leak-"))
    logdir = workdir / "reports"
    logdir.mkdir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH", "")]))
    env["HYPERSONIC_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / f"hypersonic-leak-cache-{args.tool}")
    if args.positive_control:
        env["HYPERSONIC_LEAK_CONTROL"] = "1"
    argv_server = [args.python, str(APP)]
    valgrind_log = workdir / "valgrind.log"
    try:
        if args.tool == "lsan":
            env.update(lsan_environment(logdir))
        else:
            valgrind = shutil.which("valgrind")
            if valgrind is None:
                raise FileNotFoundError("valgrind not found")
            env["PYTHONMALLOC"] = "malloc"
            # Build the module first without valgrind (compiling under it would take minutes).
            subprocess.run([args.python, "-c", "import runpy, sys; runpy.run_path(sys.argv[1], run_name='leak_app')"
                            "['app'].compile()", str(APP)], env=env, check=True, timeout=STARTUP_TIMEOUT)
            argv_server = [valgrind, "--leak-check=full", "--show-leak-kinds=definite,possible",
                           "--errors-for-leak-kinds=definite", "--num-callers=40",
                           f"--log-file={valgrind_log}", *argv_server]
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        print(f"leak_check: cannot run {args.tool}: {exc}", file=sys.stderr)
        return 2

    port = free_port()
    server_log = workdir / "server.log"
    failures: List[str] = []
    print(f"leak_check: tool={args.tool} per-kind={args.per_kind} workdir={workdir}", flush=True)
    with open(server_log, "wb") as log:
        proc = subprocess.Popen([*argv_server, str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    started = time.monotonic()
    total = 0
    try:
        wait_for_port(port, proc, STARTUP_TIMEOUT)
        idle = get_json(port, "/__stats")
        for name, run, share in KINDS:
            count = max(1, int(args.per_kind * share))
            t0 = time.monotonic()
            try:
                run(port, count)
            except (CheckFailed, OSError) as exc:
                failures.append(f"{name}: {exc}")
            total += count
            print(f"  {name:<26} {count:>6}  {time.monotonic() - t0:6.1f}s", flush=True)
        # Connections the server must have closed by now (bounded wait: aborted ones need a read).
        deadline = time.monotonic() + SETTLE_TIMEOUT
        after = get_json(port, "/__stats")
        while time.monotonic() < deadline and (after["open_connections"] > idle["open_connections"]
                                               or after["open_fds"] > idle["open_fds"]):
            time.sleep(0.5)
            after = get_json(port, "/__stats")
        print(f"  idle stats before: {idle}\n  stats after:       {after}", flush=True)
        if after["open_connections"] > idle["open_connections"] or after["open_fds"] > idle["open_fds"]:
            failures.append(f"connections/fds not released: before {idle}, after {after}")
        if args.positive_control:
            print(f"  positive control: {post_text(port, '/__leak_control')}", flush=True)
        if args.tool == "lsan":
            print(f"  steady-state LSan check: {post_text(port, '/__leakcheck')}", flush=True)
    except (RuntimeError, CheckFailed, OSError) as exc:
        failures.append(f"server: {exc}")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
                failures.append("server did not exit after SIGTERM")
    elapsed = time.monotonic() - started
    print(f"  server exit status: {proc.returncode}", flush=True)
    if proc.returncode not in (0, -signal.SIGTERM):
        failures.append(f"server exit status {proc.returncode}")

    report = parse_lsan(logdir) if args.tool == "lsan" else parse_valgrind(valgrind_log)
    if args.positive_control:
        found = {kind for kind in ("leak_malloc", "leak_reference") if any(kind in b for b in report.ours)}
        print(f"leak_check: positive control: found {sorted(found)} of the 2 deliberate leaks")
        if len(found) == 2:
            # Expected leaks: the pipeline works. Anything else still fails.
            report.ours = [b for b in report.ours if "leak_malloc" not in b and "leak_reference" not in b]
        else:
            failures.append("positive control: the deliberate leaks were not both reported")
    for block in report.ours:
        print(f"===== leak in our code:\n{block}\n", flush=True)
    for block in report.errors:
        print(f"===== sanitizer/valgrind error:\n{block}\n", flush=True)
    print(f"leak_check: {total} requests/connections in {elapsed:.0f}s; leak records with a _hs_ frame: "
          f"{len(report.ours)}; CPython's own (ignored): {report.others}; errors: {len(report.errors)}")
    for failure in failures:
        print(f"leak_check: FAILED: {failure}")
    if failures or report.ours or report.errors:
        print(f"leak_check: server log: {server_log}" if args.keep_logs else
              f"leak_check: server log tail:\n{server_log.read_text(errors='replace')[-3000:]}")
        status = 1
    else:
        print("leak_check: clean")
        status = 0
    if args.keep_logs:
        print(f"leak_check: logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
