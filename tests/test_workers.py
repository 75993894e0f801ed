"""Workers and their supervisor (issue 3 point 6), over real TCP against real processes.

Every test runs a server script in its own session (process group) and kills
that group in ``finally``. The supervisor is exercised two ways: with a small
plain-Python stand-in app (``_serve_worker``/``_request_stop`` over selectors),
which pins the supervisor's own contract whatever the C core does, and with
the real ``hypersonic.Hypersonic`` app.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="workers need fork()")

#: Upper bound for a server to start answering (the real app may compile C first).
STARTUP_LIMIT_SECONDS = 60.0
#: Upper bound for any single wait on a running server.
WAIT_LIMIT_SECONDS = 20.0
#: Bounded number of requests used to see every worker at least once.
MAX_PID_PROBES = 2000
#: Pause between two /pid probes.
PROBE_PAUSE_SECONDS = 0.01
#: drain_timeout given to the servers under test.
DRAIN_TIMEOUT = 4.0
#: How long the slow request sleeps in its handler (well inside DRAIN_TIMEOUT).
SLOW_SECONDS = 1.5

REPO_ROOT = Path(__file__).resolve().parent.parent

# The stand-in app: the supervisor's interface, served by plain Python.
STANDIN_APP = '''
import os, selectors, socket, sys, time
from urllib.parse import urlsplit, parse_qs

class StandInApp:
    """Serves /pid, /slow?seconds=S&marker=PATH and /crash, one request per connection.

    crash: "" (never), "at-start" (_serve_worker raises at once) or
    "on-request" (GET /crash makes _serve_worker raise).
    """
    compiled = True

    def __init__(self, drain_timeout, crash=""):
        self.drain_timeout = drain_timeout
        self.crash = crash
        self.stopping = False
        self.accepted = 0

    def compile(self):
        self.compiled = True

    def stats(self):
        return {"connections": self.accepted}

    def _request_stop(self):
        self.stopping = True

    def _serve_worker(self, listen_fd):
        if self.crash == "at-start":
            raise RuntimeError("stand-in worker cannot start, on purpose")
        listener = socket.socket(fileno=listen_fd)  # owns the fd, as the real loop does
        listener.setblocking(False)
        with selectors.DefaultSelector() as sel:
            sel.register(listener, selectors.EVENT_READ)
            while not self.stopping:
                for _key, _mask in sel.select(0.05):
                    try:
                        conn, _peer = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    self.accepted += 1
                    with conn:
                        self._handle(conn)
        listener.close()

    def _handle(self, conn):
        conn.setblocking(True)
        conn.settimeout(10)
        data = b""
        while b"\\r\\n\\r\\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        target = data.split(b" ")[1].decode()
        url = urlsplit(target)
        if url.path == "/pid":
            body = str(os.getpid())
        elif url.path == "/crash" and self.crash == "on-request":
            raise RuntimeError("stand-in worker crashes on purpose")
        elif url.path == "/slow":
            marker = parse_qs(url.query)["marker"][0]
            open(marker, "w").close()
            time.sleep(float(parse_qs(url.query)["seconds"][0]))
            body = "slow done"
        else:
            body = "ok"
        payload = body.encode()
        conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n%s"
                     % (len(payload), payload))

app = StandInApp(DRAIN_TIMEOUT, crash=CRASH)
'''

# The real app: the same routes as Hypersonic dynamic handlers.
REAL_APP = '''
import os, time
from hypersonic import Hypersonic

app = Hypersonic(drain_timeout=DRAIN_TIMEOUT, cache_dir=CACHE_DIR)

@app.get("/pid")
def pid(req):
    return str(os.getpid())

@app.get("/slow")
def slow(req):
    open(req.query_param("marker"), "w").close()
    time.sleep(float(req.query_param("seconds")))
    return "slow done"

@app.get("/")
def index():
    return "ok"

app.compile()
'''

RUNNER = '''
import logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                    format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
from hypersonic import _supervisor
if SIMULATE_WORKER_BIND_FAILURE:
    def _fail(address, backlog=0):
        raise _supervisor.ServerStartupError("simulated: worker could not open its listener")
    _supervisor.open_listener = _fail
if ATEXIT_MARKER:
    import atexit, os
    atexit.register(lambda: open(ATEXIT_MARKER, "a").write(f"atexit in {os.getpid()}\\n"))
if PRE_SERVE_STDOUT:
    sys.stdout.write(PRE_SERVE_STDOUT)  # left in the stdio buffer (stdout is a file)
if IN_PROCESS:
    _supervisor.serve_in_process(app, LISTEN_HOST, PORT)
else:
    _supervisor.serve(app, LISTEN_HOST, PORT, WORKERS)
logging.getLogger("test").info("supervisor returned")
'''


def _real_core_available() -> bool:
    try:
        from hypersonic.app import Hypersonic  # noqa: F401
    except ImportError:
        return False
    return hasattr(Hypersonic, "_serve_worker") and hasattr(Hypersonic, "_request_stop")


APP_KINDS = [
    "standin",
    pytest.param("real", marks=pytest.mark.skipif(not _real_core_available(),
                                                  reason="hypersonic.app core not present")),
]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (bind 0, read it, release it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


class Server:
    """A server script run in its own session; always killed by process group."""

    def __init__(self, tmp_path: Path, kind: str, *, host: str = "127.0.0.1", workers: int = 2,
                 port: Optional[int] = None, crash: str = "",
                 simulate_worker_bind_failure: bool = False, atexit_marker: str = "",
                 pre_serve_stdout: str = "", unbuffered: bool = True, in_process: bool = False) -> None:
        self.tmp_path = tmp_path
        self.host = host
        self.port = port if port is not None else free_port("::1" if ":" in host else "127.0.0.1")
        self.connect_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        header = textwrap.dedent(f"""
            LISTEN_HOST = {host!r}
            PORT = {self.port!r}
            WORKERS = {workers!r}
            DRAIN_TIMEOUT = {DRAIN_TIMEOUT!r}
            CRASH = {crash!r}
            CACHE_DIR = {str(tmp_path.parent / "hs-cache")!r}
            SIMULATE_WORKER_BIND_FAILURE = {simulate_worker_bind_failure!r}
            ATEXIT_MARKER = {atexit_marker!r}
            PRE_SERVE_STDOUT = {pre_serve_stdout!r}
            IN_PROCESS = {in_process!r}
        """)
        body = STANDIN_APP if kind == "standin" else REAL_APP
        self.script = tmp_path / f"server_{kind}.py"
        self.script.write_text(header + textwrap.dedent(body) + textwrap.dedent(RUNNER))
        self.stderr_path = tmp_path / "server.stderr"
        self.stdout_path = tmp_path / "server.stdout"
        self.unbuffered = unbuffered
        self.proc: Optional[subprocess.Popen] = None

    def __enter__(self) -> "Server":
        env = dict(os.environ)
        env.pop("PYTHONUNBUFFERED", None)
        if self.unbuffered:
            env["PYTHONUNBUFFERED"] = "1"
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, str(self.script)], cwd=self.tmp_path,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env=env, start_new_session=True)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=WAIT_LIMIT_SECONDS)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def request(self, target: str, timeout: float = WAIT_LIMIT_SECONDS) -> Tuple[int, str]:
        """One HTTP/1.1 GET on a fresh connection; returns (status, body)."""
        with socket.create_connection((self.connect_host, self.port), timeout=timeout) as sock:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, body.decode()

    def wait_until_serving(self, limit: float = STARTUP_LIMIT_SECONDS) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.stderr}")
            try:
                status, _body = self.request("/pid", timeout=2.0)
                if status == 200:
                    return
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.05)
        pytest.fail(f"server did not answer within {limit}s:\n{self.stderr}")

    def worker_pids(self, expected: int, exclude: Set[int] = frozenset()) -> Set[int]:
        """Distinct PIDs answering /pid, probing until ``expected`` are seen (bounded)."""
        seen: Set[int] = set()
        deadline = time.monotonic() + WAIT_LIMIT_SECONDS
        for _ in range(MAX_PID_PROBES):
            if len(seen - exclude) >= expected or time.monotonic() > deadline:
                break
            try:
                status, body = self.request("/pid", timeout=2.0)
            except (OSError, ValueError, IndexError):
                time.sleep(0.02)
                continue
            if status == 200:
                seen.add(int(body))
            time.sleep(PROBE_PAUSE_SECONDS)
        return seen - exclude

    def wait_exit(self, limit: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            pytest.fail(f"server still running after {limit}s:\n{self.stderr}")
        raise AssertionError("unreachable")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True


def wait_pid_gone(pid: int, limit: float = WAIT_LIMIT_SECONDS) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        # A zombie still answers kill(0); its parent reaps it. Look at /proc when present.
        stat = Path(f"/proc/{pid}/stat")
        try:
            if stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z":
                time.sleep(0.02)
                continue
        except OSError:
            return True
        time.sleep(0.02)
    return False


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("kind", APP_KINDS)
def test_two_workers_both_serve_from_distinct_processes(tmp_path: Path, kind: str) -> None:
    with Server(tmp_path, kind, workers=2) as server:
        server.wait_until_serving()
        pids = server.worker_pids(expected=2)
        assert len(pids) == 2, server.stderr
        assert server.proc is not None and server.proc.pid not in pids


@pytest.mark.parametrize("kind", APP_KINDS)
def test_killed_worker_is_replaced_and_server_keeps_answering(tmp_path: Path, kind: str) -> None:
    with Server(tmp_path, kind, workers=2) as server:
        server.wait_until_serving()
        pids = server.worker_pids(expected=2)
        assert len(pids) == 2, server.stderr
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        replacement = server.worker_pids(expected=1, exclude=pids)
        assert len(replacement) == 1, server.stderr
        assert victim not in replacement
        status, _ = server.request("/pid")
        assert status == 200
        assert server.proc is not None and server.proc.poll() is None
        assert "killed by SIGKILL" in server.stderr


def _slow_request_during_stop(server: Server, tmp_path: Path, send_stop) -> Dict[str, object]:
    """Start /slow, wait until its handler runs, call ``send_stop``, collect the answer."""
    marker = tmp_path / "slow-started"
    result: Dict[str, object] = {}

    def client() -> None:
        try:
            result["response"] = server.request(f"/slow?seconds={SLOW_SECONDS}&marker={marker}")
        except Exception as exc:  # reported by the assertion below
            result["error"] = repr(exc)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists(), "slow handler never started:\n" + server.stderr
    send_stop()
    thread.join(WAIT_LIMIT_SECONDS)
    assert not thread.is_alive()
    return result


@pytest.mark.parametrize("kind", APP_KINDS)
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_lets_in_flight_request_finish_then_exits_zero(
        tmp_path: Path, kind: str, stop_signal: signal.Signals) -> None:
    with Server(tmp_path, kind, workers=1) as server:
        server.wait_until_serving()
        worker = server.worker_pids(expected=1)
        assert server.proc is not None
        parent = server.proc.pid
        result = _slow_request_during_stop(server, tmp_path, lambda: os.kill(parent, stop_signal))
        assert result.get("response") == (200, "slow done"), (result, server.stderr)
        assert server.wait_exit(DRAIN_TIMEOUT + 10.0) == 0, server.stderr
        assert "supervisor returned" in server.stderr
        assert all(wait_pid_gone(pid) for pid in worker)


@pytest.mark.parametrize("kind", APP_KINDS)
def test_ctrl_c_to_whole_process_group_drains_and_exits_zero(tmp_path: Path, kind: str) -> None:
    with Server(tmp_path, kind, workers=2) as server:
        server.wait_until_serving()
        assert server.proc is not None
        group = server.proc.pid
        result = _slow_request_during_stop(server, tmp_path, lambda: os.killpg(group, signal.SIGINT))
        assert result.get("response") == (200, "slow done"), (result, server.stderr)
        assert server.wait_exit(DRAIN_TIMEOUT + 10.0) == 0, server.stderr


@pytest.mark.parametrize("kind", APP_KINDS)
def test_stop_refuses_new_connections_after_exit(tmp_path: Path, kind: str) -> None:
    with Server(tmp_path, kind, workers=2) as server:
        server.wait_until_serving()
        pids = server.worker_pids(expected=2)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.wait_exit(DRAIN_TIMEOUT + 10.0) == 0, server.stderr
        assert all(wait_pid_gone(pid) for pid in pids), "a worker outlived its supervisor"
        with pytest.raises(OSError):
            server.request("/pid", timeout=2.0)


def test_port_in_use_exits_nonzero_with_reason(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with Server(tmp_path, "standin", workers=2, port=port) as server:
            code = server.wait_exit(WAIT_LIMIT_SECONDS)
            assert code != 0
            assert "address already in use" in server.stderr
            assert "ServerStartupError" in server.stderr


def test_unresolvable_host_exits_nonzero_with_reason(tmp_path: Path) -> None:
    with Server(tmp_path, "standin", host="no-such-host.invalid", workers=2) as server:
        code = server.wait_exit(WAIT_LIMIT_SECONDS)
        assert code != 0
        assert "cannot listen on host 'no-such-host.invalid'" in server.stderr


def test_worker_failing_at_startup_stops_server_instead_of_respawning(tmp_path: Path) -> None:
    with Server(tmp_path, "standin", workers=3, simulate_worker_bind_failure=True) as server:
        code = server.wait_exit(WAIT_LIMIT_SECONDS)
        assert code != 0
        assert "simulated: worker could not open its listener" in server.stderr
        assert "restarting" not in server.stderr


def test_crash_looping_worker_is_restarted_with_growing_backoff(tmp_path: Path) -> None:
    with Server(tmp_path, "standin", workers=1, crash="on-request") as server:
        server.wait_until_serving()
        deadline = time.monotonic() + WAIT_LIMIT_SECONDS
        delays: List[float] = []
        while len(delays) < 4 and time.monotonic() < deadline:
            try:  # kills whichever worker is up; refused while none is
                server.request("/crash", timeout=2.0)
            except (OSError, ValueError, IndexError):
                pass
            delays = [float(d) for d in re.findall(r"restarting it in ([0-9.]+)s", server.stderr)]
            time.sleep(0.05)
        assert len(delays) >= 4, server.stderr
        assert delays[:4] == sorted(delays[:4]) and delays[3] > delays[0]
        assert "stand-in worker crashes on purpose" in server.stderr  # the worker logged why
        assert server.proc is not None and server.proc.poll() is None  # still supervising
        server.wait_until_serving()
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.wait_exit(DRAIN_TIMEOUT + 10.0) == 0, server.stderr


def test_worker_loop_raising_at_start_stops_server_with_the_reason(tmp_path: Path) -> None:
    with Server(tmp_path, "standin", workers=2, crash="at-start") as server:
        code = server.wait_exit(WAIT_LIMIT_SECONDS)
        assert code != 0
        assert "failed on start: RuntimeError: stand-in worker cannot start, on purpose" in server.stderr
        assert "restarting" not in server.stderr


@pytest.mark.parametrize("kind", APP_KINDS)
@pytest.mark.parametrize("host", ["::1", "::", "localhost", "0.0.0.0"])
def test_host_is_honoured_including_ipv6(tmp_path: Path, kind: str, host: str) -> None:
    if ":" in host and not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback on this machine")
    with Server(tmp_path, kind, host=host, workers=2) as server:
        if host == "localhost":
            server.connect_host = socket.getaddrinfo("localhost", server.port, 0, socket.SOCK_STREAM)[0][4][0]
        server.wait_until_serving()
        assert server.request("/pid")[0] == 200
        if host == "::":  # dual stack: IPv4 clients reach it too
            server.connect_host = "127.0.0.1"
            assert server.request("/pid")[0] == 200


def test_parent_killed_hard_takes_its_workers_down(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    with Server(tmp_path, "standin", workers=2) as server:
        server.wait_until_serving()
        pids = server.worker_pids(expected=2)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=WAIT_LIMIT_SECONDS)
        assert all(wait_pid_gone(pid) for pid in pids)


@pytest.mark.parametrize("kind", APP_KINDS)
def test_request_outlasting_drain_timeout_is_cut_and_parent_still_exits_zero(tmp_path: Path, kind: str) -> None:
    straggler_seconds = 60.0  # far past DRAIN_TIMEOUT + EXIT_GRACE_SECONDS
    with Server(tmp_path, kind, workers=1) as server:
        server.wait_until_serving()
        workers = server.worker_pids(expected=1)
        marker = tmp_path / "straggler-started"
        outcome: Dict[str, object] = {}

        def client() -> None:
            try:
                outcome["response"] = server.request(f"/slow?seconds={straggler_seconds}&marker={marker}")
            except Exception as exc:
                outcome["error"] = repr(exc)

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        deadline = time.monotonic() + WAIT_LIMIT_SECONDS
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), server.stderr
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGTERM)
        # Bounded well below straggler_seconds: the supervisor must not wait for it.
        assert server.wait_exit(DRAIN_TIMEOUT + 10.0) == 0, server.stderr
        assert "still running after the drain" in server.stderr
        assert all(wait_pid_gone(pid) for pid in workers)
        thread.join(WAIT_LIMIT_SECONDS)
        assert "response" not in outcome or outcome["response"] != (200, "slow done")


def test_serve_rejects_bad_arguments_before_forking() -> None:
    from hypersonic import _supervisor

    class NeverServed:
        def _serve_worker(self, listen_fd: int) -> None:
            raise AssertionError("must not be reached")

        def _request_stop(self) -> None:
            raise AssertionError("must not be reached")

    app = NeverServed()
    with pytest.raises(ValueError, match="workers"):
        _supervisor.serve(app, "127.0.0.1", 0, 0)
    with pytest.raises(TypeError, match="workers"):
        _supervisor.serve(app, "127.0.0.1", 0, "2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="port"):
        _supervisor.serve(app, "127.0.0.1", "8080", 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="port"):
        _supervisor.serve(app, "127.0.0.1", 70000, 2)
    with pytest.raises(TypeError, match="host"):
        _supervisor.serve(app, 127, 0, 2)  # type: ignore[arg-type]


def test_listen_address_url_brackets_ipv6_and_resolves_port_zero() -> None:
    from hypersonic import _supervisor

    v4 = _supervisor.probe_address(_supervisor.resolve_listen_address("127.0.0.1", 0))
    assert v4.port > 0 and v4.url == f"http://127.0.0.1:{v4.port}"
    assert _supervisor.resolve_listen_address("", 8080).url == "http://0.0.0.0:8080"
    if ipv6_loopback_available():
        assert _supervisor.resolve_listen_address("::1", 8080).url == "http://[::1]:8080"


def test_second_sigint_kills_workers_without_waiting_for_the_drain(tmp_path: Path) -> None:
    with Server(tmp_path, "standin", workers=1) as server:
        server.wait_until_serving()
        marker = tmp_path / "stuck-started"
        thread = threading.Thread(
            target=lambda: _swallow(lambda: server.request(f"/slow?seconds=60&marker={marker}")), daemon=True)
        thread.start()
        deadline = time.monotonic() + WAIT_LIMIT_SECONDS
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), server.stderr
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGINT)
        while "received SIGINT" not in server.stderr and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "received SIGINT" in server.stderr
        os.kill(server.proc.pid, signal.SIGINT)
        assert server.wait_exit(DRAIN_TIMEOUT + 10.0) == 0, server.stderr
        assert "second SIGINT: killing 1 worker(s)" in server.stderr
        thread.join(WAIT_LIMIT_SECONDS)


def _swallow(call) -> None:  # type: ignore[no-untyped-def]
    try:
        call()
    except Exception:  # the connection is cut on purpose
        pass


def test_workers_skip_atexit_handlers_and_do_not_repeat_buffered_output(tmp_path: Path) -> None:
    marker = tmp_path / "atexit.log"
    with Server(tmp_path, "standin", workers=2, atexit_marker=str(marker),
                pre_serve_stdout="written once before the fork", unbuffered=False) as server:
        server.wait_until_serving()
        pids = server.worker_pids(expected=2)
        assert len(pids) == 2
        os.kill(min(pids), signal.SIGKILL)  # a replacement is forked too
        assert len(server.worker_pids(expected=1, exclude=pids)) == 1, server.stderr
        os.kill(max(pids), signal.SIGTERM)  # a worker that exits normally: replaced as well
        assert len(server.worker_pids(expected=2, exclude={min(pids), max(pids)})) == 2, server.stderr
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.wait_exit(DRAIN_TIMEOUT + 10.0) == 0, server.stderr
        assert marker.read_text().splitlines() == [f"atexit in {server.proc.pid}"]
        assert server.stdout_path.read_text().count("written once before the fork") == 1


@pytest.mark.parametrize("kind", APP_KINDS)
def test_serve_in_process_drains_on_sigterm_and_exits_zero(tmp_path: Path, kind: str) -> None:
    with Server(tmp_path, kind, in_process=True) as server:
        server.wait_until_serving()
        assert server.proc is not None
        assert server.worker_pids(expected=1) == {server.proc.pid}  # no fork
        parent = server.proc.pid
        result = _slow_request_during_stop(server, tmp_path, lambda: os.kill(parent, signal.SIGTERM))
        assert result.get("response") == (200, "slow done"), (result, server.stderr)
        assert server.wait_exit(DRAIN_TIMEOUT + 10.0) == 0, server.stderr
        assert "supervisor returned" in server.stderr
        assert "workers=1" in server.stderr


def test_serve_in_process_port_in_use_raises_before_serving(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        with Server(tmp_path, "standin", port=holder.getsockname()[1], in_process=True) as server:
            assert server.wait_exit(WAIT_LIMIT_SECONDS) != 0
            assert "address already in use" in server.stderr
