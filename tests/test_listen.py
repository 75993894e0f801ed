"""Listening: Unix domain sockets (permissions, stale files), inherited fds and
systemd socket activation (docs/OPERATIONS.md). IPv6 and dual stack are pinned
in test_workers.py (test_host_is_honoured_including_ipv6).

Servers run as ``python -m hypersonic`` in their own session, are waited for
by a request and stopped by PID.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from pathlib import Path

import pytest

from _ops_util import CliServer, get, write_module
from _server_util import HOST
from hypersonic import _supervisor

APP = """
    import os
    from hypersonic import Hypersonic

    app = Hypersonic()

    @app.get("/")
    def index():
        return "ok"

    @app.get("/pid")
    def pid(req):
        return str(os.getpid())
"""

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix domain sockets")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_module(tmp_path, "listenapp", APP)
    return tmp_path


@pytest.mark.parametrize("workers", ["1", "2"])
def test_uds_serves_with_the_requested_mode_and_is_removed_on_exit(app_dir: Path, workers: str) -> None:
    path = str(app_dir / "app.sock")
    with CliServer(app_dir, "listenapp:app", "--workers", workers, "--uds-mode", "600", uds=path) as server:
        assert get(path, "/") == (200, b"ok")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert "serving on unix:" + path in server.output()
        assert server.stop() == 0
    assert not os.path.exists(path)


def test_stale_uds_file_is_replaced(app_dir: Path) -> None:
    path = str(app_dir / "stale.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)  # a socket file nothing accepts on, as a killed server leaves it
    dead.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    with CliServer(app_dir, "listenapp:app", uds=path) as server:
        assert get(path, "/") == (200, b"ok")
        assert "removing stale socket file" in server.output()


def test_uds_path_holding_a_regular_file_is_left_alone_and_startup_fails(app_dir: Path) -> None:
    path = app_dir / "data.sock"
    path.write_text("precious")
    server = CliServer(app_dir, "listenapp:app", uds=str(path)).start(wait=False)
    try:
        assert server.wait() == 1
        assert "exists and is not a socket" in server.output()
        assert path.read_text() == "precious"
    finally:
        server.stop()


def test_uds_path_of_a_live_server_is_not_stolen(app_dir: Path) -> None:
    path = str(app_dir / "live.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(path)
        live.listen(1)
        server = CliServer(app_dir, "listenapp:app", uds=path).start(wait=False)
        try:
            assert server.wait() == 1
            assert "another server is accepting on it" in server.output()
            assert stat.S_ISSOCK(os.lstat(path).st_mode)
        finally:
            server.stop()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_inherited_listening_fd_is_served(app_dir: Path, workers: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((HOST, 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        argv = [sys.executable, "-m", "hypersonic", "listenapp:app", "--fd", str(fd), "--workers", workers]
        with CliServer(app_dir, "listenapp:app", argv=argv, pass_fds=[fd], port=port) as server:
            listener.close()  # only the server holds it now
            assert get((HOST, port), "/") == (200, b"ok")
            assert f"serving on http://{HOST}:{port}" in server.output()


def test_systemd_socket_activation_is_honoured(app_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((HOST, 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        fd = listener.fileno()

        def place_on_fd3() -> None:  # what systemd does: the socket is fd 3
            os.dup2(fd, _supervisor.SD_LISTEN_FDS_START)

        # LISTEN_PID must name the server process itself: sh exports its own pid, then execs.
        argv = ["/bin/sh", "-c", f'LISTEN_PID=$$ LISTEN_FDS=1 exec "{sys.executable}" -m hypersonic '
                                 "listenapp:app --workers 2"]
        with CliServer(app_dir, "listenapp:app", argv=argv, pass_fds=[fd, _supervisor.SD_LISTEN_FDS_START],
                       preexec=place_on_fd3,
                       port=port) as server:
            listener.close()
            assert get((HOST, port), "/") == (200, b"ok")
            assert "systemd socket activation: serving on fd 3" in server.output()


def test_systemd_variables_for_another_pid_are_ignored() -> None:
    assert _supervisor.systemd_listen_fd({"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}) is None
    assert _supervisor.systemd_listen_fd({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "0"}) is None
    assert _supervisor.systemd_listen_fd({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"}) == 3
    assert _supervisor.systemd_listen_fd({}) is None


def test_fd_that_is_not_a_listening_socket_fails_with_the_reason(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(_supervisor.ServerStartupError, match="cannot use fd"):
            _supervisor.inherited_listener(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as unbound:
        with pytest.raises(_supervisor.ServerStartupError, match="not listening"):
            _supervisor.inherited_listener(unbound.fileno())
        assert unbound.fileno() >= 0  # left open for its owner


def test_uds_and_fd_together_are_a_usage_error(app_dir: Path) -> None:
    server = CliServer(app_dir, "listenapp:app", "--fd", "3", uds=str(app_dir / "x.sock")).start(wait=False)
    try:
        assert server.wait() == 2
        assert "give --uds or --fd, not both" in server.output()
    finally:
        server.stop()


DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "systemd"


def _unit_value(path: Path, key: str) -> str:
    for line in path.read_text().splitlines():
        if line.startswith(key + "="):
            return line[len(key) + 1:]
    raise AssertionError(f"{path.name} has no {key}=")


def test_socket_activated_unit_pair_runs_as_systemd_would_run_it(app_dir: Path) -> None:
    """deploy/systemd/hypersonic-activated.{socket,service}: the service's ExecStart
    (its app swapped for the test app), given the socket as systemd gives it."""
    service = DEPLOY / "hypersonic-activated.service"
    assert ":" in _unit_value(DEPLOY / "hypersonic-activated.socket", "ListenStream")
    assert _unit_value(service, "ExecReload") == "/bin/kill -HUP $MAINPID"
    exec_args = _unit_value(service, "ExecStart").split()[1:]
    assert exec_args[0] == "myapp:app" and "--port" not in exec_args and "--fd" not in exec_args
    prebuild_args = _unit_value(service, "ExecStartPre").split()[1:]
    assert prebuild_args == ["prebuild", "myapp:app"]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((HOST, 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        fd = listener.fileno()

        def place_on_fd3() -> None:
            os.dup2(fd, _supervisor.SD_LISTEN_FDS_START)

        command = " ".join(["listenapp:app", *exec_args[1:]])
        argv = ["/bin/sh", "-c", f'LISTEN_PID=$$ LISTEN_FDS=1 exec "{sys.executable}" -m hypersonic {command}']
        with CliServer(app_dir, "listenapp:app", argv=argv, pass_fds=[fd, _supervisor.SD_LISTEN_FDS_START],
                       preexec=place_on_fd3, port=port) as server:
            listener.close()
            assert get((HOST, port), "/") == (200, b"ok")
            assert "systemd socket activation: serving on fd 3" in server.output()


def test_uds_in_a_missing_directory_fails_at_startup_with_the_reason(app_dir: Path) -> None:
    path = str(app_dir / "no-such-dir" / "app.sock")
    server = CliServer(app_dir, "listenapp:app", "--workers", "2", uds=path).start(wait=False)
    try:
        assert server.wait() == 1
        assert f"cannot listen on unix:{path}" in server.output()
        assert "restarting" not in server.output()
    finally:
        server.stop()


def test_port_in_use_with_recycling_fails_at_startup_with_the_reason(app_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((HOST, 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        server = CliServer(app_dir, "listenapp:app", "--max-requests", "100", port=port).start(wait=False)
        try:
            assert server.wait() == 1
            assert "address already in use" in server.output()
        finally:
            server.stop()
