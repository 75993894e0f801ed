"""Helpers of the operations tests (test_lifecycle, test_listen, test_no_compiler).

* :class:`CliServer` -- ``python -m hypersonic MODULE:app ...`` in its own
  session, on TCP (127.0.0.1, a free port) or a Unix socket, waited for until it
  answers, stopped by PID (SIGTERM, then SIGKILL of its process group).
* :func:`get` -- one HTTP/1.1 request on a new connection (TCP or Unix), the
  status and body; connection errors propagate.

Every wait is bounded; nothing outlives ``stop()``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from _server_util import HOST, STARTUP_TIMEOUT, STOP_TIMEOUT, TEST_CACHE_DIR, _SRC_DIR, free_port

#: Per-request socket timeout of :func:`get`.
REQUEST_TIMEOUT = 10.0

Address = Union[Tuple[str, int], str]  # (host, port) or a Unix socket path


def _connect(address: Address, timeout: float) -> socket.socket:
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection(address, timeout=timeout)


def get(address: Address, path: str = "/", timeout: float = REQUEST_TIMEOUT) -> Tuple[int, bytes]:
    """GET ``path`` with Connection: close on a fresh connection; (status, body)."""
    with _connect(address, timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks: List[bytes] = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError(f"incomplete response: {raw[:200]!r}")
    return int(head.split(b" ", 2)[1]), body


def write_module(directory: Path, name: str, source: str) -> None:
    """Write ``directory/name.py`` from dedented ``source``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


def base_env(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """os.environ + PYTHONPATH to src + the shared test cache, with ``extra`` over it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SRC_DIR), env.get("PYTHONPATH", "")]))
    env.setdefault("HYPERSONIC_CACHE_DIR", str(TEST_CACHE_DIR))
    for name in ("HYPERSONIC_JIT", "LISTEN_FDS", "LISTEN_PID"):
        env.pop(name, None)
    env.update(extra or {})
    return env


class CliServer:
    """``python -m hypersonic <app> <args>`` run from ``directory``.

    ``uds``: serve on that Unix socket path (else TCP on a free port of
    127.0.0.1). ``argv``: a whole command instead of the hypersonic CLI (it
    must listen where ``address`` says). ``preexec``: run in the child before
    exec (e.g. to place an inherited fd).
    """

    def __init__(self, directory: Path, app: str, *args: str, uds: Optional[str] = None,
                 env: Optional[Mapping[str, str]] = None, argv: Optional[Sequence[str]] = None,
                 pass_fds: Sequence[int] = (), preexec: Optional[Callable[[], None]] = None,
                 port: Optional[int] = None) -> None:
        self.directory = directory
        self.uds = uds
        self.port = port if port is not None else (0 if uds else free_port())
        self.address: Address = uds if uds else (HOST, self.port)
        listen = ["--uds", uds] if uds else ["--host", HOST, "--port", str(self.port)]
        self.argv = list(argv) if argv is not None else [
            sys.executable, "-m", "hypersonic", app, *listen, *args]
        self.env = base_env(env)
        self.pass_fds = tuple(pass_fds)
        self.preexec = preexec
        self.log_path = directory / f"server-{time.monotonic_ns()}.log"
        self.proc: Optional["subprocess.Popen[bytes]"] = None

    def start(self, wait: bool = True) -> "CliServer":
        """Launch; with ``wait``, return once it answers ``GET /`` (bounded)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=self.directory, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         pass_fds=self.pass_fds, preexec_fn=self.preexec)
        if wait:
            try:
                self.wait_serving()
            except BaseException:
                self.stop()
                raise
        return self

    def wait_serving(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Return once a GET / succeeds; RuntimeError if the process exits first."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                get(self.address, "/", timeout=2.0)
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"server did not answer within {timeout}s:\n{self.output()}")

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the server's PID."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait (bounded) for the process to exit by itself; its exit status."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> Optional[int]:
        """SIGTERM the PID, wait (bounded), then SIGKILL the whole session; exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT)
            except ProcessLookupError:
                pass
        try:  # workers left behind by a broken supervisor
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.proc.returncode

    def output(self) -> str:
        """Everything the server wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> "CliServer":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
