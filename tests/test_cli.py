"""The ``hypersonic`` command, ``python -m hypersonic`` and the example app (issue 3 point 7).

Servers run as real processes in their own session and are killed by process
group in ``finally``; options are checked through behaviour (the port answers,
two worker PIDs are seen, a limit gives its status, headers disappear) or, for
settings with no quick observable effect, through a dynamic route of the served
app that reports the app's settings from inside the worker.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest

from hypersonic import cli

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Upper bound for a server to start answering (it may compile C first).
STARTUP_LIMIT_SECONDS = 60.0
#: Upper bound for any other wait.
WAIT_LIMIT_SECONDS = 20.0
#: Bounded number of /pid probes used to see every worker.
MAX_PID_PROBES = 2000
#: Pause between two probes.
PROBE_PAUSE_SECONDS = 0.01

APP_MODULE = '''
import os
from hypersonic import Hypersonic

app = Hypersonic()

@app.get("/")
def index():
    return "cli ok"

@app.get("/pid")
def pid(req):
    return str(os.getpid())

@app.get("/settings")
def settings(req):
    return {name: getattr(app, name, None) for name in
            ("max_connections", "max_request_size", "keepalive_timeout", "recv_timeout",
             "drain_timeout", "enable_security_headers", "cache_dir")}

@app.post("/echo")
def echo(req):
    return req.body

not_an_app = {"hello": "world"}
'''


def _core_available() -> bool:
    try:
        from hypersonic.app import Hypersonic  # noqa: F401
    except ImportError:
        return False
    return True


needs_core = pytest.mark.skipif(not _core_available(), reason="hypersonic.app core not present")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> Dict[str, str]:
    """The environment without the command's HYPERSONIC_* option variables, plus ``extra``
    (others, such as HYPERSONIC_JIT_CFLAGS from tests/sanitize.sh, pass through)."""
    option_vars = {option.env for option in cli.OPTIONS}
    env = {k: v for k, v in os.environ.items() if k not in option_vars}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Proc:
    """A command run in its own session, killed by process group on exit."""

    def __init__(self, argv: List[str], cwd: Path, env: Dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen] = None

    def __enter__(self) -> "Proc":
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=WAIT_LIMIT_SECONDS)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_exit(self, limit: float = WAIT_LIMIT_SECONDS) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.argv} still running after {limit}s:\n{self.output}")
        raise AssertionError("unreachable")

    def stop(self) -> int:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGTERM)
        return self.wait_exit()


def http(port: int, method: str, target: str, body: bytes = b"", host: str = "127.0.0.1",
         timeout: float = WAIT_LIMIT_SECONDS) -> Tuple[int, Dict[str, str], bytes]:
    """One request on a fresh connection: (status, headers lower-cased, body)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        head = (f"{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        sock.sendall(head + body)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    raw_head, _, payload = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ", 2)[1]), headers, payload


def wait_serving(proc: Proc, port: int, target: str = "/", host: str = "127.0.0.1") -> None:
    assert proc.proc is not None
    deadline = time.monotonic() + STARTUP_LIMIT_SECONDS
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            pytest.fail(f"server exited with {proc.proc.returncode}:\n{proc.output}")
        try:
            if http(port, "GET", target, host=host, timeout=2.0)[0] == 200:
                return
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.05)
    pytest.fail(f"server did not answer on port {port}:\n{proc.output}")


def worker_pids(port: int, expected: int, max_probes: int = MAX_PID_PROBES) -> Set[int]:
    """Distinct PIDs answering /pid, probing until ``expected`` are seen (bounded)."""
    seen: Set[int] = set()
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    for _ in range(max_probes):
        if len(seen) >= expected or time.monotonic() > deadline:
            break
        try:
            status, _, body = http(port, "GET", "/pid", timeout=2.0)
            if status == 200:
                seen.add(int(body))
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(PROBE_PAUSE_SECONDS)
    return seen


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A directory holding ``webapp.py`` (the app module), used as the cwd."""
    (tmp_path / "webapp.py").write_text(textwrap.dedent(APP_MODULE))
    return tmp_path


def hypersonic_argv(*args: str) -> List[str]:
    return [sys.executable, "-m", "hypersonic", *args]


def cache_env(tmp_path: Path, **extra: str) -> Dict[str, str]:
    # One compile cache for the whole test session: the first test pays for the C build.
    return clean_env(HYPERSONIC_CACHE_DIR=str(tmp_path.parent / "hs-cli-cache"), **extra)


# --------------------------------------------------------------------------- --help and errors


def test_help_documents_every_option_with_its_env_var_and_default() -> None:
    result = subprocess.run(hypersonic_argv("--help"), capture_output=True, text=True,
                            timeout=WAIT_LIMIT_SECONDS, env=clean_env())
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # undo argparse's wrapping
    assert "MODULE:APP" in text
    for option in cli.OPTIONS:
        assert option.flag in text
        assert f"env {option.env}" in text
    assert text.count("default") >= len(cli.OPTIONS)
    for flag in ("--host", "--port", "--workers", "--cache-dir", "--max-connections",
                 "--max-request-size", "--keepalive-timeout", "--recv-timeout", "--drain-timeout",
                 "--no-security-headers", "--log-level"):
        assert flag in text
    assert "[env HYPERSONIC_PORT; default 8080]" in text
    assert "[env HYPERSONIC_WORKERS; default 1]" in text


@needs_core
def test_help_shows_constructor_defaults() -> None:
    from hypersonic.app import Hypersonic
    import inspect

    defaults = inspect.signature(Hypersonic.__init__).parameters
    text = " ".join(cli.build_parser().format_help().split())
    assert f"default the app's setting, else {defaults['drain_timeout'].default!r}" in text
    assert f"default the app's setting, else {defaults['max_connections'].default!r}" in text


def test_console_script_is_installed_and_answers_help() -> None:
    script = Path(sys.executable).parent / "hypersonic"
    if not script.exists():
        pytest.skip("package not installed with its console script in this environment")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                            timeout=WAIT_LIMIT_SECONDS, env=clean_env())
    assert result.returncode == 0
    assert "HYPERSONIC_PORT" in result.stdout


@pytest.mark.parametrize("path, message", [
    ("no_such_module_here:app", "no module named 'no_such_module_here'"),
    ("no-such:app", "invalid app path 'no-such:app'"),
    (":app", "invalid app path ':app'"),
    pytest.param("webapp:missing", "module 'webapp' has no attribute 'missing'", marks=needs_core),
    pytest.param("webapp:not_an_app", "not a hypersonic.Hypersonic app", marks=needs_core),
])
def test_bad_app_path_fails_with_a_clear_message(app_dir: Path, path: str, message: str) -> None:
    result = subprocess.run(hypersonic_argv(path, "--port", "0"), cwd=app_dir, capture_output=True,
                            text=True, timeout=STARTUP_LIMIT_SECONDS, env=clean_env())
    assert result.returncode == cli.EXIT_USAGE, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_error_inside_the_app_module_shows_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import definitely_not_installed_module_xyz\n")
    result = subprocess.run(hypersonic_argv("broken:app"), cwd=tmp_path, capture_output=True, text=True,
                            timeout=WAIT_LIMIT_SECONDS, env=clean_env())
    assert result.returncode != 0
    assert "definitely_not_installed_module_xyz" in result.stderr
    assert "Traceback" in result.stderr


@pytest.mark.parametrize("env_name, value", [
    ("HYPERSONIC_PORT", "eighty"),
    ("HYPERSONIC_PORT", "70000"),
    ("HYPERSONIC_WORKERS", "0"),
    ("HYPERSONIC_DRAIN_TIMEOUT", "-1"),
    ("HYPERSONIC_NO_SECURITY_HEADERS", "maybe"),
    ("HYPERSONIC_LOG_LEVEL", "loud"),
])
def test_bad_environment_value_is_rejected_naming_the_variable(app_dir: Path, env_name: str,
                                                               value: str) -> None:
    result = subprocess.run(hypersonic_argv("webapp:app"), cwd=app_dir, capture_output=True, text=True,
                            timeout=WAIT_LIMIT_SECONDS, env=clean_env(**{env_name: value}))
    assert result.returncode == cli.EXIT_USAGE
    assert env_name in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--port", "eighty"], "--port"),
    (["--workers", "0"], "--workers"),
    (["--max-request-size", "1.5"], "--max-request-size"),
])
def test_bad_flag_value_is_rejected_naming_the_flag(app_dir: Path, args: List[str], fragment: str) -> None:
    result = subprocess.run(hypersonic_argv("webapp:app", *args), cwd=app_dir, capture_output=True,
                            text=True, timeout=WAIT_LIMIT_SECONDS, env=clean_env())
    assert result.returncode == cli.EXIT_USAGE
    assert fragment in result.stderr


def test_resolve_options_prefers_flag_over_environment() -> None:
    parser = cli.build_parser()
    namespace = parser.parse_args(["m:app", "--port", "9001"])
    given = cli.resolve_options(namespace, {"HYPERSONIC_PORT": "9002", "HYPERSONIC_WORKERS": "3",
                                            "HYPERSONIC_NO_SECURITY_HEADERS": "yes"})
    assert given == {"port": 9001, "workers": 3, "no_security_headers": True}


def test_resolve_options_leaves_out_options_given_nowhere() -> None:
    namespace = cli.build_parser().parse_args(["m:app"])
    assert cli.resolve_options(namespace, {}) == {}


# --------------------------------------------------------------------------- serving


@needs_core
def test_python_dash_m_serves_the_app_and_stops_cleanly(app_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    with Proc(hypersonic_argv("webapp:app", "--host", "127.0.0.1", "--port", str(port)),
              app_dir, cache_env(tmp_path), tmp_path / "log") as proc:
        wait_serving(proc, port)
        status, headers, body = http(port, "GET", "/")
        assert (status, body) == (200, b"cli ok")
        assert headers.get("x-frame-options") == "DENY"
        assert proc.stop() == 0, proc.output
        out = proc.output
        assert f"http://127.0.0.1:{port}" in out  # the startup line
        assert "workers" in out


@needs_core
def test_console_script_serves_the_app(app_dir: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "hypersonic"
    if not script.exists():
        pytest.skip("package not installed with its console script in this environment")
    port = free_port()
    with Proc([str(script), "webapp:app", "--host", "127.0.0.1", "--port", str(port)],
              app_dir, cache_env(tmp_path), tmp_path / "log") as proc:
        wait_serving(proc, port)
        assert http(port, "GET", "/")[2] == b"cli ok"
        assert proc.stop() == 0, proc.output


@needs_core
def test_startup_line_names_url_workers_backend_and_route_counts(app_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    with Proc(hypersonic_argv("webapp:app", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"),
              app_dir, cache_env(tmp_path), tmp_path / "log") as proc:
        wait_serving(proc, port)
        assert proc.stop() == 0, proc.output
    lines = [line for line in proc.output.splitlines() if f"http://127.0.0.1:{port}" in line]
    assert len(lines) == 1, proc.output
    line = lines[0]
    assert "workers=2" in line
    from hypersonic import socket as hs_socket

    assert hs_socket.event_backend() in line
    assert "1 static" in line and "3 dynamic" in line


@needs_core
def test_environment_fallbacks_set_host_port_and_workers(app_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = cache_env(tmp_path, HYPERSONIC_HOST="127.0.0.1", HYPERSONIC_PORT=str(port), HYPERSONIC_WORKERS="2")
    with Proc(hypersonic_argv("webapp:app"), app_dir, env, tmp_path / "log") as proc:
        wait_serving(proc, port)
        assert len(worker_pids(port, expected=2)) == 2, proc.output
        assert proc.stop() == 0, proc.output


@needs_core
def test_flags_win_over_environment(app_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = cache_env(tmp_path, HYPERSONIC_PORT="1", HYPERSONIC_WORKERS="3")
    with Proc(hypersonic_argv("webapp:app", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
              app_dir, env, tmp_path / "log") as proc:
        wait_serving(proc, port)
        # 60 fresh connections spread over 3 workers would all but surely reach two of them.
        assert len(worker_pids(port, expected=2, max_probes=60)) == 1
        assert proc.stop() == 0, proc.output


@needs_core
def test_constructor_options_from_flags_and_env_reach_the_workers(app_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = cache_env(tmp_path, HYPERSONIC_KEEPALIVE_TIMEOUT="7", HYPERSONIC_MAX_CONNECTIONS="123",
                    HYPERSONIC_NO_SECURITY_HEADERS="1")
    argv = hypersonic_argv("webapp:app", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
                           "--max-request-size", "64", "--recv-timeout", "9", "--drain-timeout", "2.5")
    with Proc(argv, app_dir, env, tmp_path / "log") as proc:
        wait_serving(proc, port)
        status, headers, body = http(port, "GET", "/settings")
        assert status == 200
        settings = json.loads(body)
        assert settings["max_request_size"] == 64
        assert settings["recv_timeout"] == 9
        assert settings["drain_timeout"] == 2.5
        assert settings["keepalive_timeout"] == 7
        assert settings["max_connections"] == 123
        assert settings["enable_security_headers"] is False
        # ... and by behaviour: no security headers, the body limit enforced.
        assert "x-frame-options" not in headers
        assert http(port, "POST", "/echo", b"x" * 64)[2] == b"x" * 64
        assert http(port, "POST", "/echo", b"x" * 65)[0] == 413
        assert proc.stop() == 0, proc.output


@needs_core
def test_port_in_use_exits_nonzero_with_the_reason(app_dir: Path, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        for workers in ("1", "2"):
            with Proc(hypersonic_argv("webapp:app", "--host", "127.0.0.1", "--port", str(port),
                                      "--workers", workers),
                      app_dir, cache_env(tmp_path), tmp_path / f"log{workers}") as proc:
                assert proc.wait_exit(STARTUP_LIMIT_SECONDS) == cli.EXIT_STARTUP
                assert "address already in use" in proc.output
                assert "Traceback" not in proc.output


# --------------------------------------------------------------------------- the example app


EXAMPLE_CHECKS = [
    ("GET", "/", b"", 200, b"Hello, World!"),
    ("GET", "/hello/Ada", b"", 200, b'{"greeting":"Hello, Ada!"}'),
    ("POST", "/echo", b"ping", 200, b"ping"),
]


def _check_example(port: int) -> None:
    for method, target, body, status, expected in EXAMPLE_CHECKS:
        got_status, _, got_body = http(port, method, target, body)
        assert (got_status, got_body) == (status, expected)
    status, headers, body = http(port, "GET", "/status")
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["status"] == "ok"


@needs_core
def test_example_app_runs_as_a_script(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, str(REPO_ROOT / "examples" / "app.py"), "--host", "127.0.0.1", "--port", str(port)]
    with Proc(argv, tmp_path, cache_env(tmp_path), tmp_path / "log") as proc:
        wait_serving(proc, port)
        _check_example(port)
        assert proc.stop() == 0, proc.output


@needs_core
def test_example_app_runs_through_the_command_with_workers(tmp_path: Path) -> None:
    port = free_port()
    argv = hypersonic_argv("examples.app:app", "--host", "127.0.0.1", "--port", str(port), "--workers", "2")
    with Proc(argv, REPO_ROOT, cache_env(tmp_path), tmp_path / "log") as proc:
        wait_serving(proc, port)
        _check_example(port)
        assert proc.stop() == 0, proc.output


COMPILED_AT_IMPORT = '''
from hypersonic import Hypersonic

app = Hypersonic(drain_timeout=1)

@app.get("/")
def index():
    return "precompiled"

app.compile()
'''


@needs_core
def test_app_compiled_at_import_takes_run_options_but_refuses_constructor_options(
        tmp_path: Path) -> None:
    (tmp_path / "precompiled.py").write_text(textwrap.dedent(COMPILED_AT_IMPORT))
    env = cache_env(tmp_path)
    refused = subprocess.run(hypersonic_argv("precompiled:app", "--max-request-size", "10"), cwd=tmp_path,
                             capture_output=True, text=True, timeout=STARTUP_LIMIT_SECONDS, env=env)
    assert refused.returncode == cli.EXIT_USAGE
    assert "already called compile()" in refused.stderr and "max_request_size" in refused.stderr
    port = free_port()
    # The same value as the app's own is not a change, so it is accepted.
    argv = hypersonic_argv("precompiled:app", "--host", "127.0.0.1", "--port", str(port), "--drain-timeout", "1")
    with Proc(argv, tmp_path, env, tmp_path / "log") as proc:
        wait_serving(proc, port)
        assert http(port, "GET", "/")[2] == b"precompiled"
        assert proc.stop() == 0, proc.output


@needs_core
def test_log_level_reaches_logging(app_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = cache_env(tmp_path, HYPERSONIC_LOG_LEVEL="warning")
    with Proc(hypersonic_argv("webapp:app", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"),
              app_dir, env, tmp_path / "quiet") as quiet:
        wait_serving(quiet, port)
        assert quiet.stop() == 0
    assert "serving on" not in quiet.output  # the INFO startup line is below the level
    port = free_port()
    with Proc(hypersonic_argv("webapp:app", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
                              "--log-level", "debug"),
              app_dir, env, tmp_path / "loud") as loud:
        wait_serving(loud, port)
        assert loud.stop() == 0
    assert "serving on" in loud.output and "DEBUG" in loud.output


@needs_core
def test_constructor_rejects_bad_option_value_with_its_message(app_dir: Path) -> None:
    result = subprocess.run(hypersonic_argv("webapp:app", "--keepalive-timeout", "0"), cwd=app_dir,
                            capture_output=True, text=True, timeout=STARTUP_LIMIT_SECONDS, env=clean_env())
    assert result.returncode == cli.EXIT_USAGE
    assert "keepalive_timeout must be > 0" in result.stderr
    assert "Traceback" not in result.stderr
