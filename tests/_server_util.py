"""Run Hypersonic servers in real subprocesses for tests (shared by every server test).

Stable API:

* :func:`free_port` -- a TCP port on 127.0.0.1 that was free a moment ago.
* :class:`ServerProcess` -- start any command that listens on a port, wait
  until the port accepts connections (or the process dies), stop it by PID
  (SIGTERM, then SIGKILL after a bound), read its output.
* :func:`start_app` -- write an app's Python source (it must define ``app``,
  not compiled) to a directory and serve it with ``app.compile()`` and
  ``app.run(port, host="127.0.0.1", workers=...)`` in a subprocess.
* :data:`TEST_CACHE_DIR` -- the JIT cache every test server shares
  (``$HYPERSONIC_TEST_CACHE_DIR``, else a per-user directory under the system
  temp dir): an app compiled once is loaded from it by later tests and runs.

Every wait here is bounded in time; nothing is left running after ``stop()``
(use the context-manager form or call ``stop()`` in ``finally``/fixtures).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

__all__ = ["HOST", "TEST_CACHE_DIR", "STARTUP_TIMEOUT", "free_port", "wait_for_port", "ServerProcess", "start_app"]

HOST = "127.0.0.1"
#: Seconds a server may take to start listening (a first run compiles C).
STARTUP_TIMEOUT = 120.0
#: Seconds a server may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 15.0
#: Interval between readiness probes.
_POLL_INTERVAL = 0.05

TEST_CACHE_DIR = Path(
    os.environ.get("HYPERSONIC_TEST_CACHE_DIR")
    or Path(tempfile.gettempdir()) / f"hypersonic-test-cache-{os.getuid()}"
)

_SRC_DIR = Path(__file__).resolve().parent.parent / "src"


def free_port(host: str = HOST) -> int:
    """A port on ``host`` that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, host: str = HOST, timeout: float = STARTUP_TIMEOUT,
                  proc: Optional[subprocess.Popen] = None) -> None:
    """Return once host:port accepts a TCP connection.

    Raises RuntimeError if ``proc`` exits first, TimeoutError after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            time.sleep(_POLL_INTERVAL)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout}s")


class ServerProcess:
    """A server subprocess listening on ``port``; stopped by PID.

    argv: the command; output (stdout and stderr) goes to ``log_path``.
    env: extra environment variables (merged over os.environ; PYTHONPATH gets
    the repository's src/ and HYPERSONIC_CACHE_DIR defaults to TEST_CACHE_DIR).
    """

    def __init__(self, argv: Sequence[str], port: int, *, host: str = HOST, log_path: Union[str, Path],
                 env: Optional[Mapping[str, str]] = None, cwd: Optional[Union[str, Path]] = None,
                 startup_timeout: float = STARTUP_TIMEOUT) -> None:
        self.argv: List[str] = list(argv)
        self.port = port
        self.host = host
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        full_env: Dict[str, str] = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SRC_DIR), full_env.get("PYTHONPATH", "")]))
        full_env.setdefault("HYPERSONIC_CACHE_DIR", str(TEST_CACHE_DIR))
        full_env.update(env or {})
        self.env = full_env
        self.proc: Optional[subprocess.Popen] = None

    @property
    def pid(self) -> int:
        """PID of the server process (after start())."""
        assert self.proc is not None, "start() first"
        return self.proc.pid

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ServerProcess":
        """Launch the process and wait until the port accepts connections."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=self.cwd)
        try:
            wait_for_port(self.port, self.host, self.startup_timeout, self.proc)
        except BaseException as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n--- server output ---\n{self.output()}") from None
        return self

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, signum: int) -> None:
        """Send a signal to the server's PID."""
        if self.alive():
            os.kill(self.pid, signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        """Signal the PID, wait up to ``timeout``, then SIGKILL; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signum)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        return self.proc.returncode

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the process to exit by itself (bounded); return its code."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        """Everything the process wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> "ServerProcess":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_RUNNER = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, {app_dir!r})
    from {module} import app
    app.compile()
    app.run(port=int(sys.argv[1]), host={host!r}, workers=int(sys.argv[2]))
    """
)


def start_app(source: str, directory: Union[str, Path], *, workers: int = 1, port: Optional[int] = None,
              env: Optional[Mapping[str, str]] = None, module: str = "hs_test_app",
              host: str = HOST) -> ServerProcess:
    """Serve the app defined in ``source`` (which binds ``app``, uncompiled) in a subprocess.

    The source is dedented and written to ``directory/<module>.py``; a runner
    configures logging to the log file, compiles the app and calls
    ``app.run(port, host, workers)``. Returns the started ServerProcess; the
    caller stops it (``with start_app(...) as server:`` does).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{module}.py").write_text(textwrap.dedent(source))
    runner = directory / f"run_{module}.py"
    runner.write_text(_RUNNER.format(app_dir=str(directory), module=module, host=host))
    port = free_port(host) if port is None else port
    server = ServerProcess([sys.executable, str(runner), str(port), str(workers)], port, host=host,
                           log_path=directory / f"{module}.log", env=env)
    return server.start()
