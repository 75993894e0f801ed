"""Shared test fixtures: the hypersonic.socket implementation under test, per backend.

Every test that takes ``sock_api`` runs once per backend available here: the
native module compiled with the platform's event backend, the native module
compiled with the poll backend, and the pure-Python reference (the oracle).
Compiled modules are cached once per test session in a temporary directory.
"""

from __future__ import annotations

import select
from types import ModuleType
from typing import Iterator

import pytest

#: Upper bound for any wait on a socket in a test (seconds); tests never assert on time.
IO_WAIT_S = 5.0


def _backends() -> tuple:
    from hypersonic.socket import available_backends

    return available_backends()


@pytest.fixture(scope="session")
def socket_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """One JIT cache directory for the whole session."""
    return tmp_path_factory.mktemp("hs_socket_cache")


@pytest.fixture(params=_backends())
def sock_api(request: pytest.FixtureRequest, socket_cache_dir) -> Iterator[ModuleType]:
    """The hypersonic.socket API of one backend ("epoll"/"kqueue", "poll", "reference")."""
    from hypersonic.socket import load

    yield load(request.param, cache_dir=socket_cache_dir)


def wait_readable(fd: int, timeout: float = IO_WAIT_S) -> bool:
    """True when fd becomes readable within timeout."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(int(timeout * 1000)))


class SocketPair:
    """A listener made by the API under test on 127.0.0.1, a stdlib client, and the accepted fd."""

    def __init__(self, api: ModuleType) -> None:
        import os
        import socket

        self.api = api
        self.listen_fd = api.create_listen_socket(0, "127.0.0.1")
        assert self.listen_fd > 0
        probe = socket.socket(fileno=os.dup(self.listen_fd))
        self.port = probe.getsockname()[1]
        probe.close()
        self.client = socket.create_connection(("127.0.0.1", self.port), timeout=IO_WAIT_S)
        assert wait_readable(self.listen_fd)
        self.fd = api.http_accept(self.listen_fd)
        assert self.fd > 0

    def send(self, data: bytes) -> None:
        """Send from the client and wait until the server side can read it."""
        self.client.sendall(data)
        assert wait_readable(self.fd)

    def recv_request(self, attempts: int = 50):
        """http_recv until a request, or a non-pending status, bounded in count and time."""
        for _ in range(attempts):
            req = self.api.http_recv(self.fd)
            if req is not None or self.api.http_recv_status(self.fd) != self.api.RECV_PENDING:
                return req
            if not wait_readable(self.fd):
                return None
        return None

    def read_response(self) -> bytes:
        """Everything the server wrote until it closes the connection (bounded)."""
        chunks = []
        while True:
            data = self.client.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)

    def close(self) -> None:
        self.client.close()
        self.api.close_fd(self.fd)
        self.api.close_fd(self.listen_fd)


@pytest.fixture
def pair(sock_api: ModuleType) -> Iterator[SocketPair]:
    """A connected client/server pair on the API under test, closed afterwards."""
    p = SocketPair(sock_api)
    try:
        yield p
    finally:
        p.close()
