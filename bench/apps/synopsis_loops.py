"""The seed's SYNOPSIS loop twice: on hypersonic.socket and on socket + select.epoll.

Run: python synopsis_loops.py {hypersonic,stdlib} PORT  (binds 127.0.0.1; SIGTERM stops it)

Both loops have the same shape as the seed's (poll; accept on the listener; on a
client: read one request per readable event, answer "Hello", close unless the
client keeps the connection alive) and the same semantics: a request split over several reads
waits for the rest, a closed peer is closed, "Connection: close" closes after
the answer. Used by bench/socket_ops.py under wrk with one connection per request.
"""

from __future__ import annotations

import select
import socket
import sys

POLL_TIMEOUT_MS = 1000
RECV_SIZE = 65536
HELLO = b"Hello"


def serve_hypersonic(port: int) -> None:
    """The SYNOPSIS loop on hypersonic.socket."""
    from hypersonic import socket as hs

    listen_fd = hs.create_listen_socket(port, "127.0.0.1")
    if listen_fd < 0:
        raise SystemExit(f"cannot listen on 127.0.0.1:{port}")
    loop_fd = hs.create_event_loop(listen_fd)
    ev_poll, http_accept, event_add = hs.ev_poll, hs.http_accept, hs.event_add
    http_recv, http_send, close_fd = hs.http_recv, hs.http_send, hs.close_fd
    http_recv_status, pending = hs.http_recv_status, hs.RECV_PENDING
    while True:
        for fd, _flags in ev_poll(loop_fd, POLL_TIMEOUT_MS):
            if fd == listen_fd:
                client_fd = http_accept(listen_fd)
                if client_fd >= 0:
                    event_add(loop_fd, client_fd)
                continue
            request = http_recv(fd)
            if request is None:
                if http_recv_status(fd) != pending:
                    close_fd(fd)
                continue
            if http_send(fd, HELLO, "text/plain") < 0 or not request[3]:
                close_fd(fd)


def serve_stdlib(port: int) -> None:
    """The same loop on the standard library."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(socket.SOMAXCONN)
    listener.setblocking(False)
    listen_fd = listener.fileno()
    epoll = select.epoll()
    epoll.register(listen_fd, select.EPOLLIN)
    clients: dict[int, socket.socket] = {}
    buffers: dict[int, bytes] = {}

    def close(fd: int) -> None:
        epoll.unregister(fd)
        clients.pop(fd).close()
        buffers.pop(fd, None)

    while True:
        for fd, _flags in epoll.poll(POLL_TIMEOUT_MS / 1000):
            if fd == listen_fd:
                try:
                    client, _ = listener.accept()
                except BlockingIOError:
                    continue
                client.setblocking(False)
                clients[client.fileno()] = client
                epoll.register(client.fileno(), select.EPOLLIN)
                continue
            client = clients[fd]
            try:
                data = client.recv(RECV_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                close(fd)
                continue
            if not data:
                close(fd)
                continue
            data = buffers.pop(fd, b"") + data
            head, separator, _ = data.partition(b"\r\n\r\n")
            if not separator:
                buffers[fd] = data
                continue
            request_line, _, header_block = head.partition(b"\r\n")
            method, path, version = request_line.split(b" ", 2)
            headers = header_block.lower()
            if version == b"HTTP/1.0":
                keep_alive = b"connection: keep-alive" in headers
            else:
                keep_alive = b"connection: close" not in headers
            try:
                client.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                               b"Connection: %s\r\n\r\n%s"
                               % (len(HELLO), b"keep-alive" if keep_alive else b"close", HELLO))
            except OSError:
                keep_alive = False
            if not keep_alive:
                close(fd)


def main() -> None:
    """Pick the implementation from argv."""
    impl, port = sys.argv[1], int(sys.argv[2])
    if impl == "hypersonic":
        serve_hypersonic(port)
    elif impl == "stdlib":
        serve_stdlib(port)
    else:
        raise SystemExit(f"implementation must be 'hypersonic' or 'stdlib', not {impl!r}")


if __name__ == "__main__":
    main()
