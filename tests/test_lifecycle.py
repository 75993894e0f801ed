"""Worker lifecycle: recycling by request count and memory, SIGHUP replacement
and code reload, all without refusing a connection (docs/OPERATIONS.md).

Servers run as ``python -m hypersonic`` in their own session on 127.0.0.1 (or
a Unix socket in tmp_path) and are stopped by PID. Clients are sequential and
bounded in count: light on CPU.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import List, Set

import pytest

from _ops_util import CliServer, get, wait_for, write_module
from hypersonic._supervisor import WorkerLimits

APP = """
    import os
    from hypersonic import Hypersonic

    VERSION = "v1"
    app = Hypersonic(drain_timeout=2)
    _hoard = []

    @app.get("/")
    def index():
        return "ok"

    @app.get("/pid")
    def pid(req):
        return str(os.getpid())

    @app.get("/version")
    def version(req):
        return VERSION + " " + str(os.getpid())

    @app.get("/grow")
    def grow(req):
        _hoard.append(bytearray(64 * 1024 * 1024))  # touched: resident
        for i in range(0, len(_hoard[-1]), 4096):
            _hoard[-1][i] = 1
        return "grown"
"""

#: Pause between the hammering client's requests.
PACE_SECONDS = 0.002
#: Requests the hammering client sends (each on a new connection).
HAMMER_REQUESTS = 600


def _hammer(server: CliServer, count: int, path: str = "/pid") -> List[bytes]:
    """``count`` sequential requests on fresh connections, lightly paced (the
    limit monitor polls, so an unpaced loopback client outruns it); every
    failure is kept."""
    bodies: List[bytes] = []
    errors: List[str] = []
    for _ in range(count):
        time.sleep(PACE_SECONDS)
        try:
            status, body = get(server.address, path)
        except OSError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        if status != 200:
            errors.append(f"status {status}")
        bodies.append(body)
    assert errors == [], f"{len(errors)} failed requests, first: {errors[:3]}\n{server.output()[-3000:]}"
    return bodies


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_module(tmp_path, "lifeapp", APP)
    return tmp_path


@pytest.mark.parametrize("listen", ["tcp", "uds"])
def test_max_requests_recycles_workers_without_refusing_a_connection(app_dir: Path, listen: str) -> None:
    uds = str(app_dir / "s.sock") if listen == "uds" else None
    with CliServer(app_dir, "lifeapp:app", "--workers", "2", "--max-requests", "40",
                   "--max-requests-jitter", "10", uds=uds) as server:
        pids: Set[bytes] = set(_hammer(server, HAMMER_REQUESTS))
        wait_for(lambda: server.output().count("old worker draining") >= 3, timeout=10)
        log = server.output()
    # 600 requests over 2 workers recycled every 40-50 requests (checked at an adaptive interval,
    # so a busy worker overshoots a little): several generations served.
    assert log.count("old worker draining") >= 3, log
    assert len(pids) >= 3, pids
    assert "max_requests" in log


def test_max_requests_is_exact_for_an_unpaced_client(app_dir: Path) -> None:
    # The native loop reports max_requests itself, in the wakeup that reaches it,
    # so an unpaced sequential client (one request per wakeup) cannot outrun it.
    with CliServer(app_dir, "lifeapp:app", "--workers", "1", "--max-requests", "25") as server:
        for _ in range(60):
            status, _body = get(server.address, "/pid")
            assert status == 200
        wait_for(lambda: "old worker draining" in server.output(), timeout=10)
        log = server.output()
    assert "served 25 requests (max_requests 25)" in log, log


def test_max_worker_rss_recycles_a_grown_worker(app_dir: Path) -> None:
    with CliServer(app_dir, "lifeapp:app", "--workers", "1", "--max-worker-rss", "150") as server:
        first = get(server.address, "/pid")[1]
        for _ in range(3):  # 192 MiB more, past the limit
            assert get(server.address, "/grow")[0] == 200
        assert wait_for(lambda: "old worker draining" in server.output(), timeout=10), server.output()
        assert wait_for(lambda: get(server.address, "/pid")[1] != first, timeout=10)
        assert "max_worker_rss 150 MiB" in server.output()


def test_sighup_replaces_every_worker_and_reloads_the_app_module(app_dir: Path) -> None:
    with CliServer(app_dir, "lifeapp:app", "--workers", "2") as server:
        before = {get(server.address, "/pid")[1] for _ in range(20)}
        (app_dir / "lifeapp.py").write_text((app_dir / "lifeapp.py").read_text().replace('"v1"', '"v2"'))
        server.signal(signal.SIGHUP)
        # Served throughout: the client keeps going while workers are swapped one at a time.
        for _ in range(10):
            _hammer(server, 20, "/version")
            if server.output().count("old worker draining") >= 2:
                break
        assert wait_for(lambda: server.output().count("old worker draining") >= 2, timeout=15), server.output()
        bodies = [get(server.address, "/version")[1] for _ in range(20)]
        assert all(body.startswith(b"v2 ") for body in bodies), bodies
        after = {body.split()[1] for body in bodies}
        assert not (after & before), (before, after)
        log = server.output()
        assert "SIGHUP: replacing 2 worker(s) one at a time" in log
        # One at a time: slot 1 is replaced only after slot 0's old process exited.
        assert re.search(r"worker 0 replaced.*\n(.*\n)*.*worker 1 \(pid \d+\) reload", log), log


def test_sighup_with_a_broken_module_keeps_the_old_workers_serving(app_dir: Path) -> None:
    with CliServer(app_dir, "lifeapp:app", "--workers", "2") as server:
        (app_dir / "lifeapp.py").write_text("this is not python\n")
        server.signal(signal.SIGHUP)
        assert wait_for(lambda: "reloading the app failed" in server.output(), timeout=15), server.output()
        assert all(get(server.address, "/version")[1].startswith(b"v1 ") for _ in range(10))
        assert "old worker draining" not in server.output()


def test_single_worker_with_a_limit_is_supervised_and_replaced_on_sighup(app_dir: Path) -> None:
    # workers=1 with a limit runs under the supervisor: SIGHUP replaces the one worker.
    with CliServer(app_dir, "lifeapp:app", "--workers", "1", "--max-requests", "100000") as server:
        first = get(server.address, "/pid")[1]
        server.signal(signal.SIGHUP)
        assert wait_for(lambda: get(server.address, "/pid")[1] != first, timeout=15), server.output()
        assert server.proc is not None and server.proc.poll() is None


def test_worker_limits_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="max_requests"):
        WorkerLimits(max_requests=-1)
    with pytest.raises(ValueError, match="max_requests_jitter needs max_requests"):
        WorkerLimits(max_requests_jitter=5)
    with pytest.raises(ValueError, match="max_worker_rss"):
        WorkerLimits(max_worker_rss=-2)
    limits = WorkerLimits(max_requests=10, max_requests_jitter=5)
    assert all(10 <= limits.request_limit() <= 15 for _ in range(50))
    assert not WorkerLimits().active


def test_cli_rejects_jitter_without_max_requests(app_dir: Path) -> None:
    server = CliServer(app_dir, "lifeapp:app", "--max-requests-jitter", "3")
    server.start(wait=False)
    try:
        assert server.wait() == 2
        assert "--max-requests-jitter needs --max-requests" in server.output()
    finally:
        server.stop()
