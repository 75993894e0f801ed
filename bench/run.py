#!/usr/bin/env python3
"""Benchmark Hypersonic against nginx, granian, socketify and uvicorn in one invocation.

Method (issue 4): every server runs alone on core 1 (``taskset -c 1``), one wrk
thread runs on core 0, and this harness stays on core 0 too. For each scenario
all servers are started, each one's answers are checked (status, body,
Content-Type, Content-Length; pipelined and ``Connection: close`` exchanges
included) before anything is measured, each is warmed up, then the rounds run
round-robin across the servers so a drift in background load hits every server
alike. Per round and server: requests/s and p99 latency from wrk, **server CPU
microseconds per request** = (utime+stime of the server's whole process tree
from /proc, after - before) / requests completed, peak RSS of the tree and of
its largest process (the worker), non-2xx responses and socket errors. Reported
figures are medians over rounds (errors are summed, RSS is the maximum).

On a 2-core machine one wrk thread saturates near the fastest servers' rate, so
requests/s cannot separate them; CPU per request can.

Usage::

    bash bench/setup.sh                       # once: wrk/nginx check + bench/.venv
    bench/.venv/bin/python bench/run.py       # everything, 5 rounds of 3 s (about 16 minutes)
    bench/.venv/bin/python bench/run.py --quick --only nginx --scenario plaintext-64

Writes its section of bench/RESULTS.md (between ``<!-- run.py:begin -->`` and
``<!-- run.py:end -->``), bench/results.png and the raw figures in bench/out/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import h11

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
APPS_DIR = BENCH_DIR / "apps"
LUA_DIR = BENCH_DIR / "lua"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
RESULTS_PNG = BENCH_DIR / "results.png"
SECTION_BEGIN = "<!-- run.py:begin -->"
SECTION_END = "<!-- run.py:end -->"

SERVER_CORE = 1
CLIENT_CORE = 0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

STARTUP_TIMEOUT_S = 180.0  # first start of Hypersonic may compile its C
STOP_TIMEOUT_S = 10.0
CHECK_TIMEOUT_S = 5.0
RSS_SAMPLE_INTERVAL_S = 0.05
SETTLE_AFTER_RUN_S = 0.2  # let the server finish closing before reading its CPU
WRK_TIMEOUT = "5s"
PIPELINE_DEPTH = 16
POST_BODY_SIZE = 1024
USER_ID = "12345"
HELLO = b"Hello, World!"
HELLO_JSON = {"message": "Hello, World!"}


# --------------------------------------------------------------------------- scenarios


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One wrk workload and the response every server must give to it."""

    name: str
    description: str
    path: str
    connections: int
    method: str = "GET"
    lua: tuple[str, ...] = ()
    lua_args: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    expected_content_type: str = "text/plain"
    pipeline_depth: int = 1
    connection_close: bool = False
    expected_body: bytes = b""  # when set, the exact body expected (else derived from the path)

    def expected_body_ok(self, body: bytes) -> bool:
        """True when ``body`` is the answer this scenario expects."""
        if self.expected_body:
            return body == self.expected_body
        if self.path == "/json":
            try:
                return json.loads(body) == HELLO_JSON
            except ValueError:
                return False
        if self.path.startswith("/user/"):
            return body == USER_ID.encode()
        if self.path == "/upload":
            return body == str(POST_BODY_SIZE).encode()
        return body == HELLO


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("plaintext-64", "GET /plaintext, 64 keep-alive connections", "/plaintext", 64),
    Scenario("plaintext-256", "GET /plaintext, 256 keep-alive connections", "/plaintext", 256),
    Scenario("json-64", "GET /json, 64 connections", "/json", 64, expected_content_type="application/json"),
    Scenario("json-256", "GET /json, 256 connections", "/json", 256, expected_content_type="application/json"),
    Scenario("pipeline-16", "GET /plaintext, 16-deep pipelining, 64 connections", "/plaintext", 64,
             lua=("pipeline.lua",), lua_args=(str(PIPELINE_DEPTH),), pipeline_depth=PIPELINE_DEPTH),
    Scenario("dynamic-param", "GET /user/:id (path parameter, handler returns the id), 64 connections",
             f"/user/{USER_ID}", 64),
    Scenario("post-1k", "POST /upload with a 1 KiB body, 64 connections", "/upload", 64, method="POST",
             lua=("post.lua",), headers=(("Content-Type", "application/octet-stream"),),
             body=b"x" * POST_BODY_SIZE),
    Scenario("conn-close", "GET /plaintext with Connection: close (one connection per request), 64 at a time",
             "/plaintext", 64, headers=(("Connection", "close"),), connection_close=True),
)


# --------------------------------------------------------------------------- servers


@dataclasses.dataclass
class ServerSpec:
    """How to start one server under test on a given port."""

    name: str
    description: str
    command: Callable[[int, Path], list[str]]
    version: Callable[[], str]
    skip_scenarios: tuple[str, ...] = ()
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    prepare: Optional[Callable[[int, Path], None]] = None
    unavailable: Optional[Callable[[], Optional[str]]] = None


def _python() -> str:
    return sys.executable


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _nginx_version() -> str:
    result = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
    return (result.stderr or result.stdout).strip().replace("nginx version: ", "")


def _hypersonic_version() -> str:
    commit = subprocess.run(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    return f"{_dist_version('hypersonic')} (git {commit or '?'})"


def _nginx_prepare(port: int, scratch: Path) -> None:
    scratch.mkdir(parents=True, exist_ok=True)
    template = (APPS_DIR / "nginx.conf.template").read_text()
    conf = template.replace("@PORT@", str(port)).replace("@DIR@", str(scratch))
    (scratch / "nginx.conf").write_text(conf)


def _import_error(module: str) -> Callable[[], Optional[str]]:
    def check() -> Optional[str]:
        result = subprocess.run([_python(), "-c", f"import {module}"], capture_output=True, text=True,
                                check=False, timeout=60)
        if result.returncode != 0:
            return f"`import {module}` fails: {result.stderr.strip().splitlines()[-1:]}"
        return None
    return check


def _tool_missing(tool: str) -> Callable[[], Optional[str]]:
    return lambda: None if shutil.which(tool) else f"{tool} not on PATH"


FLOOR_SOURCE = BENCH_DIR / "floor" / "floor_server.c"
FLOOR_BINARY = OUT_DIR / "floor_server"
FLOOR_SCENARIOS = ("plaintext-64", "plaintext-256", "pipeline-16")


def _build_floor() -> Optional[str]:
    """Compile floor/floor_server.c with cc -O2; return why not, or None."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        return "no C compiler (cc/gcc/clang) on PATH"
    OUT_DIR.mkdir(exist_ok=True)
    result = subprocess.run([compiler, "-O2", "-Wall", "-Wextra", "-std=gnu11", "-o", str(FLOOR_BINARY),
                             str(FLOOR_SOURCE)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return f"{compiler} failed: {result.stderr.strip()[:200]}"
    return None


SERVERS: tuple[ServerSpec, ...] = (
    ServerSpec(
        "nginx", "nginx, 1 worker, `return 200` config (apps/nginx.conf.template), access log off",
        lambda port, scratch: ["nginx", "-p", str(scratch), "-c", str(scratch / "nginx.conf")],
        _nginx_version, prepare=_nginx_prepare, unavailable=_tool_missing("nginx")),
    ServerSpec(
        "granian", "granian, RSGI app (apps/granian_rsgi.py), 1 worker",
        lambda port, scratch: [_python(), "-m", "granian", "--interface", "rsgi", "--workers", "1",
                               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                               "--no-ws", "apps.granian_rsgi:app"],
        lambda: _dist_version("granian"), unavailable=_import_error("granian")),
    ServerSpec(
        "socketify", "socketify (uWebSockets), 1 process (apps/socketify_app.py)",
        lambda port, scratch: [_python(), str(APPS_DIR / "socketify_app.py"), str(port)],
        lambda: _dist_version("socketify"), unavailable=_import_error("socketify")),
    ServerSpec(
        "uvicorn", "uvicorn + httptools + uvloop, raw ASGI app (apps/uvicorn_asgi.py), 1 worker",
        lambda port, scratch: [_python(), "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1", "--loop", "uvloop", "--http", "httptools",
                               "--log-level", "warning", "--no-access-log", "apps.uvicorn_asgi:app"],
        lambda: (f"{_dist_version('uvicorn')} (httptools {_dist_version('httptools')}, "
                 f"uvloop {_dist_version('uvloop')})"),
        unavailable=_import_error("uvicorn")),
    ServerSpec(
        "hypersonic-static", "Hypersonic, static routes (zero-parameter handlers, answered in C), 1 worker; "
        "not in dynamic-param (a path parameter needs a handler: that is hypersonic-dynamic)",
        lambda port, scratch: [_python(), str(APPS_DIR / "hypersonic_app.py"), "static", str(port)],
        _hypersonic_version, skip_scenarios=("dynamic-param",), env={"HYPERSONIC_JIT": "1"},
        unavailable=_import_error("hypersonic.app")),
    ServerSpec(
        "hypersonic-dynamic", "Hypersonic, dynamic routes (a Python handler per request), 1 worker",
        lambda port, scratch: [_python(), str(APPS_DIR / "hypersonic_app.py"), "dynamic", str(port)],
        _hypersonic_version, env={"HYPERSONIC_JIT": "1"}, unavailable=_import_error("hypersonic.app")),
    ServerSpec(
        "floor-c", "reference floor, not a real server: bench/floor/floor_server.c (epoll, one recv and one "
        "send per read, fixed response, no Date), plaintext scenarios only",
        lambda port, scratch: [str(FLOOR_BINARY), str(port)],
        lambda: "cc -O2", skip_scenarios=tuple(s.name for s in SCENARIOS if s.name not in FLOOR_SCENARIOS),
        unavailable=_build_floor),
)


# --------------------------------------------------------------------------- /proc


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(root_pid: int) -> list[int]:
    """PIDs of ``root_pid`` and all its descendants (that exist now)."""
    children = _children_map()
    tree, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        if os.path.exists(f"/proc/{pid}"):
            tree.append(pid)
            stack.extend(children.get(pid, []))
    return tree


def cpu_ticks(pids: list[int]) -> int:
    """Sum of utime+stime (clock ticks, all threads) of ``pids``; vanished ones count 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total


def core_ticks(core: int) -> tuple[int, int]:
    """(busy, total) clock ticks of CPU ``core`` since boot, from /proc/stat."""
    with open("/proc/stat", "rb") as stat_file:
        for line in stat_file:
            if line.startswith(b"cpu%d " % core):
                values = [int(v) for v in line.split()[1:]]
                idle = values[3] + values[4]  # idle + iowait
                return sum(values[:8]) - idle, sum(values[:8])
    raise RuntimeError(f"no cpu{core} line in /proc/stat")


def rss_kib(pid: int) -> int:
    """Current resident set size of ``pid`` in KiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


class RssSampler:
    """Samples the RSS of a process tree in a thread; keeps the peak total and peak single process."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak_tree_kib = 0
        self.peak_process_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        sizes = [rss_kib(pid) for pid in self.pids]
        self.peak_tree_kib = max(self.peak_tree_kib, sum(sizes))
        self.peak_process_kib = max(self.peak_process_kib, max(sizes, default=0))

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_INTERVAL_S):
            self._sample()

    def __enter__(self) -> "RssSampler":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


# --------------------------------------------------------------------------- server processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclasses.dataclass
class RunningServer:
    """A started server: its spec, port, root process and log."""

    spec: ServerSpec
    port: int
    process: subprocess.Popen
    log_path: Path

    def tree(self) -> list[int]:
        """The server's current process tree."""
        return process_tree(self.process.pid)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's output."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_server(spec: ServerSpec, scratch_root: Path) -> RunningServer:
    """Start ``spec`` pinned to the server core and wait until it answers GET /plaintext."""
    port = free_port()
    scratch = scratch_root / spec.name
    scratch.mkdir(parents=True, exist_ok=True)
    if spec.prepare:
        spec.prepare(port, scratch)
    env = dict(os.environ)
    env.update(spec.env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH", "")]))
    env.setdefault("HYPERSONIC_CACHE_DIR", str(OUT_DIR / "hypersonic_cache"))
    log_path = scratch / "server.log"
    log_file = open(log_path, "ab")
    argv = ["taskset", "-c", str(SERVER_CORE), *spec.command(port, scratch)]
    process = subprocess.Popen(argv, cwd=BENCH_DIR, env=env, stdin=subprocess.DEVNULL,
                               stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    log_file.close()
    server = RunningServer(spec, port, process, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{spec.name} exited with {process.returncode} at startup:\n{server.log_tail()}")
        try:
            status, _, _ = http_exchange(port, SCENARIOS[0], 1)[0]
            if status == 200:
                return server
        except (OSError, h11.ProtocolError, ValueError):
            pass
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"{spec.name} did not answer within {STARTUP_TIMEOUT_S:.0f}s:\n{server.log_tail()}")


def stop_server(server: RunningServer) -> None:
    """SIGTERM the server's root process, wait, then SIGKILL whatever of its tree is left (by PID)."""
    tree = server.tree()
    with contextlib.suppress(ProcessLookupError):
        server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            server.process.kill()
        server.process.wait(timeout=STOP_TIMEOUT_S)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        left = [pid for pid in tree if os.path.exists(f"/proc/{pid}") and _is_live(pid)]
        if not left:
            return
        time.sleep(0.1)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _is_live(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] != b"Z"


# --------------------------------------------------------------------------- response checks


def request_bytes(method: str, path: str, port: int, headers: tuple[tuple[str, str], ...] = (),
                  body: bytes = b"") -> bytes:
    """One HTTP/1.1 request as wrk sends it."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def check_scenario(server: RunningServer, scenario: Scenario) -> None:
    """Raise ValueError unless the server answers ``scenario`` correctly."""
    count = scenario.pipeline_depth
    responses = http_exchange(server.port, scenario, count)
    for index, (status, headers, body) in enumerate(responses):
        where = f"response {index + 1}/{count}"
        if status != 200:
            raise ValueError(f"{where}: status {status}, body {body[:80]!r}")
        if not scenario.expected_body_ok(body):
            raise ValueError(f"{where}: unexpected body {body[:80]!r}")
        content_type = headers.get("content-type", "")
        if not content_type.startswith(scenario.expected_content_type):
            raise ValueError(f"{where}: Content-Type {content_type!r}, expected {scenario.expected_content_type}")
        if headers.get("content-length") != str(len(body)):
            raise ValueError(f"{where}: Content-Length {headers.get('content-length')!r} for a "
                             f"{len(body)}-byte body")


def http_exchange(port: int, scenario: Scenario, expected: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Send ``expected`` copies of the scenario's request back to back on one connection and parse
    the responses strictly with h11 (status, headers, body each). With ``Connection: close`` the
    server must close the connection after the last response.
    """
    requests = [request_bytes(scenario.method, scenario.path, port, scenario.headers, scenario.body)] * expected
    conn = h11.Connection(h11.CLIENT)
    responses: list[tuple[int, dict[str, str], bytes]] = []
    h11_headers = [("Host", f"127.0.0.1:{port}"), *scenario.headers]
    if scenario.body:
        h11_headers.append(("Content-Length", str(len(scenario.body))))

    def announce() -> None:
        conn.send(h11.Request(method=scenario.method, target=scenario.path, headers=h11_headers))
        if scenario.body:
            conn.send(h11.Data(data=scenario.body))
        conn.send(h11.EndOfMessage())

    announce()
    with socket.create_connection(("127.0.0.1", port), timeout=CHECK_TIMEOUT_S) as sock:
        sock.sendall(b"".join(requests))
        status, headers, body = 0, {}, bytearray()
        deadline = time.monotonic() + CHECK_TIMEOUT_S
        while True:
            if time.monotonic() > deadline:
                raise ValueError(f"timed out after {len(responses)} of {expected} responses")
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                if not data and len(responses) < expected:
                    raise ValueError(f"connection closed after {len(responses)} of {expected} responses")
                conn.receive_data(data)
                if not data:
                    break
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {name.decode().lower(): value.decode() for name, value in event.headers}
                body = bytearray()
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                responses.append((status, headers, bytes(body)))
                if len(responses) == expected:
                    if not scenario.connection_close:
                        break
                    # The server must close now: nothing more may arrive.
                    sock.settimeout(CHECK_TIMEOUT_S)
                    rest = sock.recv(65536)
                    if rest:
                        raise ValueError(f"bytes after the last response to Connection: close: {rest[:80]!r}")
                    break
                conn.start_next_cycle()
                announce()
            elif isinstance(event, h11.ConnectionClosed):
                break
            else:
                raise ValueError(f"unexpected h11 event {event!r}")
    if len(responses) != expected:
        raise ValueError(f"{len(responses)} responses, expected {expected}")
    return responses


# --------------------------------------------------------------------------- wrk


def wrk_script(scenario: Scenario) -> Path:
    """Write report.lua + the scenario's lua into one wrk script; return its path."""
    parts = [(LUA_DIR / "report.lua").read_text()]
    parts += [(LUA_DIR / name).read_text() for name in scenario.lua]
    path = OUT_DIR / "lua" / f"{scenario.name}.lua"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path


def run_wrk(port: int, scenario: Scenario, duration_s: float) -> dict:
    """Run one wrk pass (one thread, pinned to the client core); return its WRKJSON figures."""
    argv = ["taskset", "-c", str(CLIENT_CORE), "wrk", "-t1", f"-c{scenario.connections}",
            f"-d{duration_s:g}s", f"--timeout={WRK_TIMEOUT}", "-s", str(wrk_script(scenario))]
    for name, value in scenario.headers:
        if scenario.lua and name == "Content-Type":
            continue  # set by post.lua
        argv += ["-H", f"{name}: {value}"]
    argv.append(f"http://127.0.0.1:{port}{scenario.path}")
    if scenario.lua_args:
        argv += ["--", *scenario.lua_args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False,
                            timeout=duration_s + 60)
    for line in result.stdout.splitlines():
        if line.startswith("WRKJSON "):
            figures = json.loads(line[len("WRKJSON "):])
            figures["non2xx"] = _non2xx(result.stdout)
            return figures
    raise RuntimeError(f"wrk gave no figures (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")


def _non2xx(wrk_stdout: str) -> int:
    for line in wrk_stdout.splitlines():
        line = line.strip()
        if line.startswith("Non-2xx or 3xx responses:"):
            return int(line.split(":")[1])
    return 0


# --------------------------------------------------------------------------- measuring


@dataclasses.dataclass
class RoundResult:
    """One wrk pass against one server."""

    requests: int
    duration_s: float
    rps: float
    p99_ms: float
    cpu_us_per_request: float
    errors: int
    error_kinds: dict[str, int]
    non2xx: int
    peak_tree_kib: int
    peak_process_kib: int
    others_on_server_core_pct: float  # busy time of core 1 not spent by the server: noise


@dataclasses.dataclass
class CellResult:
    """Medians over the rounds of one server on one scenario (or why there are none)."""

    server: str
    scenario: str
    rounds: list[RoundResult] = dataclasses.field(default_factory=list)
    failure: str = ""

    def median(self, field: str) -> float:
        """Median of ``field`` over the rounds."""
        return statistics.median(getattr(r, field) for r in self.rounds)

    def total(self, field: str) -> int:
        """Sum of ``field`` over the rounds."""
        return sum(getattr(r, field) for r in self.rounds)

    def peak(self, field: str) -> int:
        """Maximum of ``field`` over the rounds."""
        return max(getattr(r, field) for r in self.rounds)

    def error_summary(self) -> str:
        """Socket errors summed over rounds, with their kinds (wrk's connect/read/write/timeout)."""
        kinds: dict[str, int] = {}
        for result in self.rounds:
            for kind, count in result.error_kinds.items():
                kinds[kind] = kinds.get(kind, 0) + count
        total = sum(kinds.values())
        return f"{total} ({', '.join(f'{k} {v}' for k, v in kinds.items())})" if total else "0"

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return {"server": self.server, "scenario": self.scenario, "failure": self.failure,
                "rounds": [dataclasses.asdict(r) for r in self.rounds]}


def measure_round(server: RunningServer, scenario: Scenario, duration_s: float) -> RoundResult:
    """One measured wrk pass: wrk figures + server CPU and RSS from /proc."""
    tree = server.tree()
    before = cpu_ticks(tree)
    core_before = core_ticks(SERVER_CORE)
    with RssSampler(tree) as sampler:
        figures = run_wrk(server.port, scenario, duration_s)
        time.sleep(SETTLE_AFTER_RUN_S)
    after = cpu_ticks(tree)
    core_after = core_ticks(SERVER_CORE)
    core_total = max(core_after[1] - core_before[1], 1)
    others = max(0, (core_after[0] - core_before[0]) - (after - before)) / core_total * 100
    requests = max(figures["requests"], 1)
    duration = figures["duration_us"] / 1e6
    error_kinds = {kind: figures[kind] for kind in ("connect", "read", "write", "timeout") if figures[kind]}
    errors = sum(error_kinds.values())
    return RoundResult(
        requests=figures["requests"], duration_s=duration, rps=figures["requests"] / duration,
        p99_ms=figures["p99_us"] / 1000.0,
        cpu_us_per_request=(after - before) / CLK_TCK * 1e6 / requests,
        errors=errors, error_kinds=error_kinds, non2xx=figures["non2xx"],
        peak_tree_kib=sampler.peak_tree_kib, peak_process_kib=sampler.peak_process_kib,
        others_on_server_core_pct=others)


def bare_python_rss_kib() -> int:
    """RSS of a bare interpreter (the same one the Python servers use), for the memory target."""
    process = subprocess.Popen([_python(), "-c", "import sys, time; print('ready', flush=True); time.sleep(30)"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        process.stdout.readline()
        time.sleep(0.2)
        return rss_kib(process.pid)
    finally:
        process.kill()
        process.wait()


def log(message: str) -> None:
    """Progress on stderr (this is a script, not library code)."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def run_scenario(scenario: Scenario, specs: list[ServerSpec], args: argparse.Namespace,
                 scratch_root: Path, check: Optional[Callable[[RunningServer, Scenario], object]] = None,
                 ) -> list[CellResult]:
    """Start every server, check them (``check``, default check_scenario: raises ValueError
    for a wrong answer), warm them up, then measure round-robin."""
    check = check or check_scenario
    cells = {spec.name: CellResult(spec.name, scenario.name) for spec in specs}
    running: list[RunningServer] = []
    try:
        for spec in specs:
            if scenario.name in spec.skip_scenarios:
                cells[spec.name].failure = "n/a"
                continue
            try:
                server = start_server(spec, scratch_root / scenario.name)
            except (RuntimeError, OSError) as exc:
                cells[spec.name].failure = f"did not start: {str(exc).splitlines()[0]}"
                log(f"{scenario.name}: {spec.name}: {exc}")
                continue
            try:
                check(server, scenario)
            except (ValueError, OSError, h11.ProtocolError) as exc:
                cells[spec.name].failure = f"wrong answer: {exc}"
                log(f"{scenario.name}: {spec.name}: check failed: {exc}")
                stop_server(server)
                continue
            running.append(server)
        for server in running:
            run_wrk(server.port, scenario, args.warmup)
        for round_index in range(args.rounds):
            for server in running:
                cell = cells[server.spec.name]
                if cell.failure:
                    continue
                try:
                    result = measure_round(server, scenario, args.duration)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    cell.failure = f"wrk failed: {str(exc).splitlines()[0]}"
                    continue
                cell.rounds.append(result)
                log(f"{scenario.name} round {round_index + 1}/{args.rounds} {server.spec.name}: "
                    f"{result.rps:,.0f} req/s, {result.cpu_us_per_request:.2f} us CPU/req, "
                    f"p99 {result.p99_ms:.2f} ms, errors {result.errors}, non-2xx {result.non2xx}")
    finally:
        for server in running:
            stop_server(server)
    return [cells[spec.name] for spec in specs]


# --------------------------------------------------------------------------- report


def machine_description() -> dict[str, str]:
    """CPU model, core count, kernel, Python, load."""
    model = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "load": subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip(),
    }


def _fmt_kib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def _p99(cell: CellResult) -> str:
    # wrk's percentile() answers 0 when it has few latency samples (with pipelining it
    # records one per batch of 16): show that as n/a, not as zero latency.
    value = cell.median("p99_ms")
    return f"{value:.2f}" if value > 0 else "n/a"


def results_table(cells: list[CellResult], scenarios: list[Scenario]) -> str:
    """The markdown table: one row per scenario x server."""
    rows = ["| scenario | server | req/s | p99 ms | server CPU us/req | peak RSS MiB (tree / worker) "
            "| non-2xx | socket errors |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    by_key = {(c.scenario, c.server): c for c in cells}
    servers = list(dict.fromkeys(c.server for c in cells))
    for scenario in scenarios:
        for server in servers:
            cell = by_key.get((scenario.name, server))
            if cell is None:
                continue
            if not cell.rounds and cell.failure == "n/a":
                continue  # scenario not applicable to this server (see the server list)
            if not cell.rounds:
                rows.append(f"| {scenario.name} | {server} | {cell.failure or 'no data'} | | | | | |")
                continue
            rows.append(
                f"| {scenario.name} | {server} | {cell.median('rps'):,.0f} | {_p99(cell)} "
                f"| **{cell.median('cpu_us_per_request'):.2f}** "
                f"| {_fmt_kib(cell.peak('peak_tree_kib'))} / {_fmt_kib(cell.peak('peak_process_kib'))} "
                f"| {cell.total('non2xx')} | {cell.error_summary()} |")
    return "\n".join(rows)


def _cell(cells: list[CellResult], scenario: str, server: str) -> Optional[CellResult]:
    for cell in cells:
        if cell.scenario == scenario and cell.server == server and cell.rounds:
            return cell
    return None


def target_lines(cells: list[CellResult], bare_python_kib: int) -> list[str]:
    """Issue 4 point 2's ratios, each with its target and whether it is met."""
    lines = ["| target (issue 4) | measured | goal | met |", "| --- | ---: | ---: | :---: |"]

    def add(label: str, value: Optional[float], goal: str, ok: Optional[bool], fmt: str = "{:.2f}") -> None:
        shown = fmt.format(value) if value is not None else "n/a"
        lines.append(f"| {label} | {shown} | {goal} | {'n/a' if ok is None else ('yes' if ok else '**no**')} |")

    nginx_plain = _cell(cells, "plaintext-64", "nginx")
    hs_plain = _cell(cells, "plaintext-64", "hypersonic-static")
    ratio = (hs_plain.median("cpu_us_per_request") / nginx_plain.median("cpu_us_per_request")
             if hs_plain and nginx_plain else None)
    add("static plaintext-64: server CPU/req, Hypersonic static / nginx", ratio, "<= 0.8",
        None if ratio is None else ratio <= 0.8, "{:.2f}x")

    floor_plain = _cell(cells, "plaintext-64", "floor-c")
    ratio = (floor_plain.median("cpu_us_per_request") / nginx_plain.median("cpu_us_per_request")
             if floor_plain and nginx_plain else None)
    add("(reference) plaintext-64: server CPU/req, bare C floor server / nginx", ratio, "(the floor)", None,
        "{:.2f}x")

    nginx_pipe = _cell(cells, "pipeline-16", "nginx")
    hs_pipe = _cell(cells, "pipeline-16", "hypersonic-static")
    ratio = hs_pipe.median("rps") / nginx_pipe.median("rps") if hs_pipe and nginx_pipe else None
    add("pipeline-16: req/s, Hypersonic static / nginx", ratio, ">= 5", None if ratio is None else ratio >= 5,
        "{:.2f}x")
    value = hs_pipe.median("cpu_us_per_request") if hs_pipe else None
    add("pipeline-16: Hypersonic static server CPU us/req", value, "<= 1.0",
        None if value is None else value <= 1.0, "{:.2f} us")

    socketify_dyn = _cell(cells, "dynamic-param", "socketify")
    hs_dyn = _cell(cells, "dynamic-param", "hypersonic-dynamic")
    ratio = hs_dyn.median("rps") / socketify_dyn.median("rps") if hs_dyn and socketify_dyn else None
    add("dynamic-param: req/s, Hypersonic dynamic / socketify", ratio, ">= 1.5",
        None if ratio is None else ratio >= 1.5, "{:.2f}x")
    ratio = (socketify_dyn.median("cpu_us_per_request") / hs_dyn.median("cpu_us_per_request")
             if hs_dyn and socketify_dyn else None)
    add("dynamic-param: server CPU/req, socketify / Hypersonic dynamic (req/s at equal CPU)", ratio,
        "(>= 1.5)", None, "{:.2f}x")

    nginx_256 = _cell(cells, "plaintext-256", "nginx")
    for name in ("hypersonic-static", "hypersonic-dynamic"):
        hs_256 = _cell(cells, "plaintext-256", name)
        if hs_256 and nginx_256:
            limit = 2 * nginx_256.peak("peak_process_kib") + bare_python_kib
            value = hs_256.peak("peak_process_kib")
            loose = 2 * (nginx_256.peak("peak_process_kib") + bare_python_kib)
            add(f"plaintext-256: {name} worker RSS MiB (goal: 2 x nginx worker "
                f"{_fmt_kib(nginx_256.peak('peak_process_kib'))} + bare Python {_fmt_kib(bare_python_kib)}; "
                f"read as 2 x (nginx + Python) the limit is {loose / 1024:.1f})",
                value / 1024, f"<= {limit / 1024:.1f}", value <= limit, "{:.1f}")
        else:
            add(f"plaintext-256: {name} worker RSS vs 2 x nginx worker + bare Python", None, "", None)
    return lines


def write_chart(cells: list[CellResult], scenarios: list[Scenario], path: Path) -> bool:
    """Bar chart of server CPU us/request per scenario and server; False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no chart")
        return False
    servers = list(dict.fromkeys(c.server for c in cells))
    names = [s.name for s in scenarios]
    width = 0.8 / max(len(servers), 1)
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(names)), 5.5))
    for index, server in enumerate(servers):
        xs, ys = [], []
        for pos, scenario in enumerate(names):
            cell = _cell(cells, scenario, server)
            if cell:
                xs.append(pos + (index - (len(servers) - 1) / 2) * width)
                ys.append(cell.median("cpu_us_per_request"))
        bars = ax.bar(xs, ys, width, label=server)
        for bar, value in zip(bars, ys):
            ax.annotate(f"{value:.1f}" if value >= 10 else f"{value:.2g}",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=6, rotation=90, xytext=(0, 2),
                        textcoords="offset points")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right")
    ax.set_ylabel("server CPU microseconds per request (lower is better)")
    ax.set_title("Server CPU per request (server on 1 core, 1 wrk thread on the other; median of rounds)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ymax = max((c.median("cpu_us_per_request") for c in cells if c.rounds), default=1)
    ax.set_ylim(0, ymax * 1.15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _noise(cells: list[CellResult], pick: Callable = statistics.median) -> float:
    values = [r.others_on_server_core_pct for c in cells for r in c.rounds]
    return pick(values) if values else 0.0


def render_section(cells: list[CellResult], scenarios: list[Scenario], specs: list[ServerSpec],
                   args: argparse.Namespace, machine: dict[str, str], load_after: str, bare_python_kib: int,
                   started: dt.datetime, chart: bool) -> str:
    """The markdown written between the run.py markers of RESULTS.md."""
    provisional = args.quick or args.only or args.scenario
    out = [SECTION_BEGIN, "",
           f"## Servers compared ({'provisional: ' if provisional else ''}run of {started:%Y-%m-%d %H:%M} UTC)", ""]
    if provisional:
        out += ["> Partial or quick run (filters or `--quick`): figures are provisional.", ""]
    out += [
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, Linux {machine['kernel']}, "
        f"Python {machine['python']}",
        f"- Load before: `{machine['load']}`",
        f"- Load after: `{load_after}`",
        f"- Command: `{' '.join(['bench/.venv/bin/python', 'bench/run.py', *sys.argv[1:]])}`",
        f"- Method: server pinned to core {SERVER_CORE}, `wrk -t1` pinned to core {CLIENT_CORE}; per scenario "
        f"every server is started fresh, its answers checked (status, body, Content-Type, Content-Length; "
        f"pipelined and close exchanges too), warmed up {args.warmup:g}s, then {args.rounds} round(s) of "
        f"{args.duration:g}s run round-robin across servers. Figures are medians over rounds; errors are "
        "summed; RSS is the peak (sampled every 50 ms) of the whole process tree / of its largest process. "
        "Server CPU us/req = utime+stime of the server's process tree from /proc during the round "
        "divided by the requests wrk completed. wrk counts status >= 400 as non-2xx; with "
        "pipelining wrk records one latency per batch and may report no p99 (shown as n/a).",
        f"- Bare `python` interpreter RSS: {_fmt_kib(bare_python_kib)} MiB",
        f"- Noise: during the measured rounds, other processes (and interrupts) kept the server's core "
        f"busy {_noise(cells):.1f}% of the time (median over rounds; max {_noise(cells, max):.1f}%).",
        "", "Servers and versions:", ""]
    for spec in specs:
        out.append(f"- **{spec.name}** {spec.version()}: {spec.description}")
    out += ["", "Scenarios:", ""]
    for scenario in scenarios:
        out.append(f"- **{scenario.name}**: {scenario.description}")
    out += ["", "### Targets", "", *target_lines(cells, bare_python_kib), "",
            "### All figures", "", results_table(cells, scenarios), ""]
    if chart:
        out += ["![server CPU microseconds per request](results.png)", ""]
    out += [SECTION_END]
    return "\n".join(out)


def replace_section(path: Path, begin: str, end: str, section: str) -> None:
    """Replace the text between ``begin`` and ``end`` in ``path`` (append when absent)."""
    text = path.read_text() if path.exists() else "# Hypersonic benchmark results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


# --------------------------------------------------------------------------- main


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per server and scenario (5)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measured round (3)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per server (2)")
    parser.add_argument("--quick", action="store_true", help="1 round of 2s, 1s warm-up (provisional)")
    parser.add_argument("--only", action="append", metavar="SERVER",
                        help=f"only this server (repeatable): {', '.join(s.name for s in SERVERS)}")
    parser.add_argument("--scenario", action="append", metavar="NAME",
                        help=f"only this scenario (repeatable): {', '.join(s.name for s in SCENARIOS)}")
    parser.add_argument("--no-write", action="store_true", help="print the results; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 2.0, 1.0
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.duration <= 0 or args.warmup <= 0:
        parser.error("--duration and --warmup must be positive")
    known_servers = {s.name for s in SERVERS}
    for name in args.only or []:
        if name not in known_servers:
            parser.error(f"--only: unknown server {name!r} (known: {', '.join(sorted(known_servers))})")
    known_scenarios = {s.name for s in SCENARIOS}
    for name in args.scenario or []:
        if name not in known_scenarios:
            parser.error(f"--scenario: unknown scenario {name!r} (known: {', '.join(sorted(known_scenarios))})")
    return args


def check_environment() -> None:
    """Exit with a clear message when wrk/taskset are missing or the machine has one core."""
    missing = [tool for tool in ("wrk", "taskset") if not shutil.which(tool)]
    if missing:
        sys.exit(f"run.py: {', '.join(missing)} not found: run bench/setup.sh (it says what to install)")
    if len(os.sched_getaffinity(0)) < 2 and (os.cpu_count() or 1) < 2:
        sys.exit("run.py: needs at least 2 cores (server on core 1, wrk on core 0)")


def main(argv: Optional[list[str]] = None) -> int:
    """Run the selected servers x scenarios and write the report."""
    args = parse_args(argv)
    check_environment()
    os.sched_setaffinity(0, {CLIENT_CORE})
    OUT_DIR.mkdir(exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    machine = machine_description()
    specs = [s for s in SERVERS if not args.only or s.name in args.only]
    scenarios = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    usable: list[ServerSpec] = []
    skipped: dict[str, str] = {}
    for spec in specs:
        reason = spec.unavailable() if spec.unavailable else None
        if reason:
            skipped[spec.name] = reason
            log(f"skipping {spec.name}: {reason}")
        else:
            usable.append(spec)
    bare_kib = bare_python_rss_kib()
    scratch_root = OUT_DIR / f"run-{started:%Y%m%d-%H%M%S}"
    cells: list[CellResult] = []
    for scenario in scenarios:
        log(f"scenario {scenario.name}: {scenario.description}")
        cells += run_scenario(scenario, usable, args, scratch_root)
    for name, reason in skipped.items():
        cells += [CellResult(name, s.name, failure=f"not run: {reason}") for s in scenarios]
    load_after = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    raw = {"started": started.isoformat(), "machine": machine, "load_after": load_after,
           "args": vars(args), "bare_python_kib": bare_kib, "cells": [c.as_dict() for c in cells]}
    (scratch_root / "results.json").parent.mkdir(parents=True, exist_ok=True)
    (scratch_root / "results.json").write_text(json.dumps(raw, indent=1))
    print(results_table(cells, scenarios))
    print("\n".join(target_lines(cells, bare_kib)))
    if not args.no_write:
        chart = write_chart(cells, scenarios, RESULTS_PNG)
        section = render_section(cells, scenarios, specs, args, machine, load_after, bare_kib, started, chart)
        replace_section(RESULTS_MD, SECTION_BEGIN, SECTION_END, section)
        log(f"wrote {RESULTS_MD.relative_to(REPO_DIR)}" + (f" and {RESULTS_PNG.relative_to(REPO_DIR)}" if chart else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
