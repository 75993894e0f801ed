#!/usr/bin/env python3
"""Send an exact number of HTTP requests to a server and read every response (for profiling).

wrk runs for a time, not a count; instruction counts per request need a known
count. This client opens CONNECTIONS keep-alive connections to 127.0.0.1:PORT,
keeps DEPTH requests in flight on each (DEPTH > 1 pipelines them), and stops
after REQUESTS responses. Every response to the same request has the same
length (fixed body, fixed-width Date), so the first response, read and
validated with h11, gives the length expected of the rest.

Usage: python fixed_load.py PORT PATH REQUESTS [--connections 16] [--depth 1]
Prints "requests=N seconds=S" on success; exits non-zero on a wrong or missing answer.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import sys
import time

import h11

RECV_SIZE = 262144
TIMEOUT_S = 600.0  # a server under valgrind is ~50x slower


def first_response_length(port: int, request: bytes) -> int:
    """Send one request, check it is a 200 with h11, return the response's length in bytes."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))  # keep h11's state in step
    conn.send(h11.EndOfMessage())
    total = 0
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        sock.sendall(request)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(RECV_SIZE)
                if not data:
                    raise SystemExit("fixed_load: server closed before answering")
                total += len(data)
                conn.receive_data(data)
            elif isinstance(event, h11.Response) and event.status_code != 200:
                raise SystemExit(f"fixed_load: status {event.status_code}")
            elif isinstance(event, h11.EndOfMessage):
                return total


def main() -> int:
    """Run the load; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("path")
    parser.add_argument("requests", type=int)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--depth", type=int, default=1, help="requests in flight per connection (pipelining)")
    args = parser.parse_args()
    if args.requests < 1 or args.connections < 1 or args.depth < 1:
        parser.error("requests, --connections and --depth must be positive")
    request = f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n\r\n".encode()
    size = first_response_length(args.port, request)
    selector = selectors.DefaultSelector()
    to_send = args.requests
    done = 0
    pending: dict[socket.socket, int] = {}  # bytes still expected per connection
    in_flight: dict[socket.socket, int] = {}  # requests those bytes answer
    start = time.monotonic()
    for _ in range(min(args.connections, args.requests)):
        sock = socket.create_connection(("127.0.0.1", args.port))
        sock.setblocking(False)
        burst = min(args.depth, to_send)
        sock.sendall(request * burst)
        to_send -= burst
        pending[sock], in_flight[sock] = burst * size, burst
        selector.register(sock, selectors.EVENT_READ)
    while done < args.requests:
        if time.monotonic() - start > TIMEOUT_S:
            raise SystemExit(f"fixed_load: timed out after {done} of {args.requests} responses")
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            data = sock.recv(RECV_SIZE)
            if not data:
                raise SystemExit(f"fixed_load: server closed a connection after {done} responses")
            pending[sock] -= len(data)
            if pending[sock] < 0:
                raise SystemExit("fixed_load: more bytes than expected (responses differ in length?)")
            if pending[sock] == 0:
                done += in_flight[sock]
                burst = min(args.depth, to_send)
                if burst:
                    sock.setblocking(True)
                    sock.sendall(request * burst)
                    sock.setblocking(False)
                    to_send -= burst
                    pending[sock], in_flight[sock] = burst * size, burst
                else:
                    selector.unregister(sock)
                    sock.close()
    elapsed = time.monotonic() - start
    print(f"requests={args.requests} seconds={elapsed:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
