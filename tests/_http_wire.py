"""Raw-socket HTTP/1.1 helpers for the server tests: send bytes, read exactly
framed responses (by Content-Length; HEAD/204/304 without body), and a strict
check of each response through h11. Every read is bounded by a socket timeout."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import h11

HOST = "127.0.0.1"
#: Seconds any single read may block.
READ_TIMEOUT = 10.0


@dataclass
class WireResponse:
    status: int
    reason: bytes
    headers: List[Tuple[bytes, bytes]]
    body: bytes
    raw: bytes = b""

    def header(self, name: str) -> Optional[str]:
        """First value of a field (case-insensitive), or None."""
        key = name.lower().encode()
        for n, v in self.headers:
            if n.lower() == key:
                return v.decode("latin-1")
        return None

    def header_all(self, name: str) -> List[str]:
        key = name.lower().encode()
        return [v.decode("latin-1") for n, v in self.headers if n.lower() == key]


@dataclass
class Reader:
    """Buffered reader over a socket."""

    sock: socket.socket
    buf: bytes = b""
    eof: bool = False
    raw: List[bytes] = field(default_factory=list)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            self.eof = True
            raise EOFError("connection closed by server")
        self.buf += chunk

    def read_until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            self._fill()
        idx = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:idx], self.buf[idx:]
        return out

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head_request: bool = False) -> WireResponse:
        """Read one response; validate its framing with h11."""
        head = self.read_until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        assert version == b"HTTP/1.1", lines[0]
        code, _, reason = rest.partition(b" ")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name, value.strip()))
        status = int(code)
        resp = WireResponse(status, reason, headers, b"")
        length = resp.header("content-length")
        if head_request or status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            assert length is not None, f"no Content-Length in {head!r}"
            body = self.read_exact(int(length))
        resp.body = body
        resp.raw = head + body
        _h11_check(resp.raw, head_request)
        return resp

    def at_eof(self) -> bool:
        """True when the server has closed (reads until EOF; bounded by the socket timeout)."""
        try:
            while True:
                self._fill()
        except EOFError:
            return True
        except ConnectionResetError:
            return True


def _h11_check(raw: bytes, head_request: bool) -> None:
    """h11 as a strict validator: the bytes must parse as exactly one response."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="HEAD" if head_request else "GET", target="/", headers=[("Host", "t")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    events = []
    while True:
        ev = conn.next_event()
        if ev is h11.NEED_DATA or isinstance(ev, h11.EndOfMessage):
            events.append(ev)
            break
        if isinstance(ev, h11.InformationalResponse):
            continue
        events.append(ev)
    assert isinstance(events[0], h11.Response), events
    assert isinstance(events[-1], h11.EndOfMessage), f"h11 did not see a complete response in {raw[:200]!r}"


def connect(port: int) -> Tuple[socket.socket, Reader]:
    sock = socket.create_connection((HOST, port), timeout=READ_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, Reader(sock)


def request(port: int, raw: bytes, head_request: bool = False) -> WireResponse:
    """One request on a fresh connection; the response."""
    sock, reader = connect(port)
    with sock:
        sock.sendall(raw)
        return reader.response(head_request)


def get(target: str, extra: str = "", method: str = "GET", version: str = "1.1") -> bytes:
    """Bytes of a simple request."""
    return f"{method} {target} HTTP/{version}\r\nHost: t\r\n{extra}\r\n".encode()
