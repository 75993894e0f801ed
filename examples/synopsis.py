"""The seed's SYNOPSIS event loop, on hypersonic.socket, done right: it answers
"Hello" to every request.

    python examples/synopsis.py --port 8080
    curl http://127.0.0.1:8080/

Compared with the seed's sketch it (1) accepts every pending connection, (2)
calls http_recv until it returns None, because one readable event can carry
several pipelined requests, (3) keeps connections that only sent part of a
request, (4) closes connections the peer closed, and (5) answers rejected
requests (oversized, malformed) with their status before closing them.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import List, Optional

import hypersonic.socket as hs

#: Longest ev_poll wait, so Ctrl-C is noticed promptly.
POLL_TIMEOUT_MS = 1000
#: Connections accepted per readable event on the listener (fairness with clients).
ACCEPT_BATCH = 64


def handle_client(loop_fd: int, fd: int) -> None:
    """Answer every complete request buffered on fd; close fd when it is done for."""
    while True:
        req = hs.http_recv(fd)
        if req is None:
            break
        method, path, body, keep_alive, _ = req
        if hs.http_send(fd, "Hello", "text/plain") < 0 or not keep_alive:
            hs.event_del(loop_fd, fd)
            hs.close_fd(fd)
            return
    status = hs.http_recv_status(fd)
    if status == hs.RECV_PENDING:
        return  # an incomplete request: wait for more bytes
    if status != hs.RECV_CLOSED:
        hs.http_send_error(fd, status)  # 400, 413, 414, 431, 501 or 505
    hs.event_del(loop_fd, fd)
    hs.close_fd(fd)


def serve(port: int, host: Optional[str] = None) -> int:
    """Run the loop until interrupted. Returns a process exit status."""
    listen_fd = hs.create_listen_socket(port, host)
    if listen_fd < 0:
        print(f"cannot listen on {host or '0.0.0.0'}:{port}", file=sys.stderr)
        return 1
    loop_fd = hs.create_event_loop(listen_fd)
    if loop_fd < 0:
        print("cannot create the event loop", file=sys.stderr)
        hs.close_fd(listen_fd)
        return 1
    with socket.socket(fileno=os.dup(listen_fd)) as probe:
        bound = probe.getsockname()
    print(f"listening on http://{bound[0]}:{bound[1]}/ ({hs.event_backend()})", flush=True)
    try:
        while True:
            for fd, flags in hs.ev_poll(loop_fd, POLL_TIMEOUT_MS):
                if fd == listen_fd:
                    for _ in range(ACCEPT_BATCH):
                        client_fd = hs.http_accept(listen_fd)
                        if client_fd < 0:
                            break
                        if hs.event_add(loop_fd, client_fd) < 0:
                            hs.close_fd(client_fd)
                else:
                    handle_client(loop_fd, fd)
    except KeyboardInterrupt:
        return 0
    finally:
        hs.close_fd(loop_fd)
        hs.close_fd(listen_fd)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="TCP port (0: any free port; default 8080)")
    parser.add_argument("--host", default=None, help="address to bind (default: every IPv4 interface)")
    args = parser.parse_args(argv)
    return serve(args.port, args.host)


if __name__ == "__main__":
    sys.exit(main())
