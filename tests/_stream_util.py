"""Helpers for the streaming and SSE tests: start the test app on either server
(native C loop or the pure-Python fallback), read streamed responses with h11
over raw sockets, and poll the files a handler writes its progress to.

Every wait is bounded; nothing asserts on timing."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import h11
import pytest

from _server_util import HOST, ServerProcess, start_app

#: Seconds any single read may block.
READ_TIMEOUT = 10.0
#: Upper bound of a poll for a condition the server should reach.
POLL_LIMIT = 20.0

SERVERS = ["native", "python"]


def serve(source: str, tmp_path_factory: pytest.TempPathFactory, which: str, name: str,
          extra_env: Optional[Dict[str, str]] = None) -> Tuple[ServerProcess, Path]:
    """Start ``source`` on the native (``which == "native"``) or Python server; (server, state dir)."""
    state = tmp_path_factory.mktemp(f"{name}-{which}-state")
    env = {"HS_STATE_DIR": str(state)}
    if which == "python":
        env["HYPERSONIC_JIT"] = "0"
    env.update(extra_env or {})
    server = start_app(source, tmp_path_factory.mktemp(f"{name}-{which}"), env=env)
    return server, state


def connect(port: int, rcvbuf: Optional[int] = None) -> socket.socket:
    """A connected client socket (a small receive buffer when rcvbuf is given)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(READ_TIMEOUT)
    sock.connect((HOST, port))
    return sock


def request_bytes(path: str, method: str = "GET", headers: Optional[Dict[str, str]] = None,
                  version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: test"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class H11Reader:
    """Read responses from one connection with h11 (strict framing checks)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn = h11.Connection(h11.CLIENT)

    def send(self, method: str, path: str, headers: Optional[Dict[str, str]] = None, *, wire: bool = True) -> None:
        """Send a request; wire=False only tells h11 (the bytes were sent raw, e.g. pipelined)."""
        hdrs = [("Host", "test")] + list((headers or {}).items())
        data = self.conn.send(h11.Request(method=method, target=path, headers=hdrs))
        data = (data or b"") + (self.conn.send(h11.EndOfMessage()) or b"")
        if wire:
            self.sock.sendall(data)

    def events(self) -> Iterator[object]:
        """h11 events until EndOfMessage; raises h11.RemoteProtocolError on a truncated body."""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
                continue
            yield event
            if isinstance(event, h11.EndOfMessage):
                return

    def response(self) -> Tuple[h11.Response, bytes]:
        """(the response head, the whole body)."""
        head: Optional[h11.Response] = None
        body = bytearray()
        for event in self.events():
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
        assert head is not None
        return head, bytes(body)

    def next_cycle(self) -> None:
        self.conn.start_next_cycle()


def header(resp: h11.Response, name: str) -> Optional[str]:
    key = name.lower().encode()
    for n, v in resp.headers:
        if n == key:
            return v.decode("latin-1")
    return None


def read_until_close(sock: socket.socket) -> bytes:
    """Everything until the server closes (bounded by the socket timeout per read)."""
    out = bytearray()
    while True:
        data = sock.recv(65536)
        if not data:
            return bytes(out)
        out += data


def wait_for(predicate, limit: float = POLL_LIMIT, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``limit`` seconds pass; its last value."""
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return bool(value)
        time.sleep(interval)


def read_state(state: Path, name: str) -> str:
    try:
        return (state / name).read_text()
    except OSError:
        return ""


def rss_kib(pid: int) -> int:
    """Resident set size of a process (Linux /proc), KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def split_lines(data: bytes) -> List[bytes]:
    return [line for line in data.split(b"\n") if line]


__all__ = ["SERVERS", "serve", "connect", "request_bytes", "H11Reader", "header", "read_until_close", "wait_for",
           "read_state", "rss_kib", "split_lines", "os"]
