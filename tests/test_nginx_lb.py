"""nginx load-balancing two Hypersonic instances loses no request when one stops (issue 5 point 5).

The recipe under test is the one shipped: ``deploy/nginx/run-lb.sh`` renders
``deploy/nginx/hypersonic-lb.conf.template`` and runs the OS's nginx in the
foreground (temp prefix, pid file and error log in it, a free 127.0.0.1
port). Two instances of ``scripts/soak_app.py`` (one worker each) are the
upstreams. Client threads send keep-alive GETs through nginx (static and
dynamic routes, every body checked) while:

1. instance A gets SIGTERM (it drains and exits 0);
2. A is started again on the same port and serves again (through nginx);
3. instance B gets SIGTERM (a rolling restart's second half).

Every single response must be a 200 with the right body: nginx retries the
requests an instance refused or dropped on the other one. Skipped only when
nginx is not installed (Debian/Ubuntu package: ``nginx-light`` or ``nginx``).
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import soak  # noqa: E402  (scripts/soak.py: server start)
from _server_util import HOST, ServerProcess, free_port, wait_for_port  # noqa: E402

RUN_LB = REPO / "deploy" / "nginx" / "run-lb.sh"


def _find_nginx() -> Optional[str]:
    if os.access("/usr/sbin/nginx", os.X_OK):
        return "/usr/sbin/nginx"
    return shutil.which("nginx")


NGINX = _find_nginx()

pytestmark = [
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light)"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc via scripts/soak.py (Linux only)"),
]

#: Client threads (each one keep-alive connection to nginx, reopened if nginx closes it).
CLIENTS = 8
#: Seconds of load between the steps.
PHASE_SECONDS = 1.5
#: Seconds any request through nginx may take (nginx retries inside it).
REQUEST_TIMEOUT = 15.0
#: Seconds nginx may take to start listening, and to exit.
NGINX_START_LIMIT = 15.0
NGINX_STOP_LIMIT = 10.0
#: Bound on how long a stopped instance may take to exit (drain_timeout 5 + margin).
INSTANCE_STOP_LIMIT = 15.0
#: Bound on the client loops.
CLIENT_LIMIT_SECONDS = 120.0


@dataclass
class Nginx:
    """nginx run through deploy/nginx/run-lb.sh; stopped by PID."""

    prefix: Path
    port: int
    upstreams: Tuple[int, int]
    proc: Optional["subprocess.Popen[bytes]"] = None

    def start(self) -> "Nginx":
        env = dict(os.environ, LB_LISTEN=f"{HOST}:{self.port}", UPSTREAM_1=f"{HOST}:{self.upstreams[0]}",
                   UPSTREAM_2=f"{HOST}:{self.upstreams[1]}", LB_PREFIX=str(self.prefix), LB_WORKERS="1",
                   NGINX=str(NGINX))
        self.prefix.mkdir(parents=True, exist_ok=True)
        with open(self.prefix / "run-lb.out", "wb") as out:
            self.proc = subprocess.Popen(["sh", str(RUN_LB)], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, HOST, NGINX_START_LIMIT, self.proc)  # type: ignore[arg-type]
        except (RuntimeError, TimeoutError):
            self.stop()
            raise AssertionError(f"nginx did not start:\n{self.log()}") from None
        return self

    def log(self) -> str:
        text = ""
        for name in ("run-lb.out", "error.log"):
            path = self.prefix / name
            if path.exists():
                text += f"--- {name} ---\n" + path.read_text(errors="replace")[-3000:]
        return text

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # run-lb.sh exec'd nginx: this is the master's PID
        try:
            self.proc.wait(timeout=NGINX_STOP_LIMIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=NGINX_STOP_LIMIT)


@dataclass
class LbClient:
    """Keep-alive GETs through nginx; every answer must be a 200 with the expected body."""

    cid: int
    port: int
    stop: threading.Event
    ok: int = 0
    failures: List[str] = field(default_factory=list)

    def run(self) -> None:
        deadline = time.monotonic() + CLIENT_LIMIT_SECONDS
        conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT)
        n = 0
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                n += 1
                if n % 3 == 0:
                    target, expected = "/static", b"static-ok"
                else:
                    target, expected = f"/item/{self.cid}-{n}?q=lb", f"item {self.cid}-{n} q=lb".encode()
                try:
                    conn.request("GET", target)
                    resp = conn.getresponse()
                    body = resp.read()
                except (OSError, http.client.HTTPException) as exc:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {target}: {exc!r}")
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT)
                    continue
                if resp.status != 200 or body != expected:
                    self.failures.append(f"{target}: {resp.status} {body[:80]!r}")
                else:
                    self.ok += 1
        finally:
            conn.close()


@pytest.fixture
def processes() -> Iterator[List[object]]:
    """Everything a test starts (servers, nginx) is appended here and stopped by PID."""
    started: List[object] = []
    yield started
    for item in reversed(started):
        if isinstance(item, ServerProcess):
            item.stop(signal.SIGKILL if item.alive() else signal.SIGTERM, timeout=10)
        elif isinstance(item, Nginx):
            item.stop()


def _start_instance(processes: List[object], tmp_path: Path, name: str, port: Optional[int] = None) -> ServerProcess:
    port = free_port() if port is None else port
    server = ServerProcess([sys.executable, str(soak.APP_SCRIPT), str(port), "1"], port,
                           log_path=tmp_path / f"{name}.log")
    processes.append(server)
    return server.start()


def _stop_instance(server: ServerProcess) -> int:
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout=INSTANCE_STOP_LIMIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"instance on {server.port} did not exit {INSTANCE_STOP_LIMIT}s after SIGTERM")
    raise AssertionError("unreachable")


def _served_by_instance(lb_port: int, instance: ServerProcess) -> bool:
    """True once a request through nginx is answered by ``instance`` (bounded polling)."""
    deadline = time.monotonic() + REQUEST_TIMEOUT
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(HOST, lb_port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request("GET", "/pid")
            resp = conn.getresponse()
            if resp.status == 200 and resp.read() == str(instance.pid).encode():
                return True
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.02)
    return False


def test_stopping_either_instance_under_load_loses_no_request_through_nginx(
        tmp_path: Path, processes: List[object]) -> None:
    first = _start_instance(processes, tmp_path, "instance-a")
    second = _start_instance(processes, tmp_path, "instance-b")
    lb = Nginx(tmp_path / "nginx", free_port(), (first.port, second.port))
    processes.append(lb)
    lb.start()
    assert _served_by_instance(lb.port, first) and _served_by_instance(lb.port, second), lb.log()

    stop = threading.Event()
    clients = [LbClient(i, lb.port, stop) for i in range(CLIENTS)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    try:
        time.sleep(PHASE_SECONDS)
        ok_before = sum(c.ok for c in clients)
        code_first = _stop_instance(first)                       # 1. A stops under load
        time.sleep(PHASE_SECONDS)
        restarted = _start_instance(processes, tmp_path, "instance-a2", port=first.port)  # 2. A is back
        assert _served_by_instance(lb.port, restarted), lb.log()
        time.sleep(PHASE_SECONDS)
        code_second = _stop_instance(second)                     # 3. B stops under load
        time.sleep(PHASE_SECONDS)
        ok_after = sum(c.ok for c in clients)
    finally:
        stop.set()
        for thread in threads:
            thread.join(REQUEST_TIMEOUT + 5)
    assert not any(t.is_alive() for t in threads)
    failures = [f for c in clients for f in c.failures]
    detail = f"{sum(c.ok for c in clients)} ok, {len(failures)} failed: {failures[:10]}\n{lb.log()}"
    assert not failures, detail
    assert code_first == 0 and code_second == 0, (code_first, code_second, first.output()[-2000:],
                                                  second.output()[-2000:])
    assert ok_before > 0 and ok_after > ok_before, detail
    assert restarted.alive(), restarted.output()[-2000:]
