#!/usr/bin/env python3
"""What a baked gzip variant costs a static route: callgrind instructions per request.

A static route with a gzip variant (app.compress(); HS_ROUTE_STATIC_GZIP) reads
the request's Accept-Encoding before copying one of its two baked responses;
a static route without one must cost what it did before. This starts one
server under ``valgrind --tool=callgrind`` with two static routes serving the
same 4.4 kB body (``/plain``: a type outside ``types``, so no variant; ``/gz``:
application/javascript, so a variant), and for each case sends N keep-alive
requests, 16 pipelined at a time, carrying a 10-field browser head; counters
are zeroed before (``callgrind_control -z``) and dumped after (``-d``) each case.
User-space instructions are exact and repeatable on a busy machine; wall time
is not.

Cases:
  plain                /plain, Accept-Encoding: deflate, br, gzip;q=0
  variant-identity     /gz, same request: identity chosen (the same bytes copied, plus Vary)
  variant-gzip         /gz, Accept-Encoding: gzip, deflate, br: the gzip variant

Usage (from the repository; needs valgrind):
    python bench/gzip_variant_cost.py [--requests 20000]
Prints one line per case. Results of one run are in docs/COMPRESSION.md.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Tuple

REPO = Path(__file__).resolve().parent.parent
DEPTH = 16
STARTUP_S = 600.0  # the first start compiles the C, under valgrind
FIELDS = ("Host: www.kittyhell.com\r\n"
          "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
          "Accept: */*\r\nAccept-Language: en-US,en;q=0.5\r\n{accept_encoding}"
          "Referer: https://www.kittyhell.com/\r\nConnection: keep-alive\r\nSec-Fetch-Dest: script\r\n"
          "Sec-Fetch-Mode: no-cors\r\nSec-Fetch-Site: same-origin\r\n")
SERVER = r'''
import sys
from hypersonic import Hypersonic, Response
app = Hypersonic(cache_dir=sys.argv[2])
BODY = "console.log('hello');\n" * 200
app.get("/plain", lambda: Response(BODY, content_type="application/x-not-compressed"))
app.get("/gz", lambda: Response(BODY, content_type="application/javascript"))
app.compress()
app.compile()
if len(sys.argv) > 3:
    app.run(port=int(sys.argv[1]), host="127.0.0.1")
'''
CASES = [
    ("plain", "/plain", "Accept-Encoding: deflate, br, gzip;q=0\r\n"),
    ("variant-identity", "/gz", "Accept-Encoding: deflate, br, gzip;q=0\r\n"),
    ("variant-gzip", "/gz", "Accept-Encoding: gzip, deflate, br\r\n"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _first_response(port: int, request: bytes) -> Tuple[socket.socket, int]:
    """A keep-alive connection that has had one answer; the answer's length in bytes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=STARTUP_S)
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    match = re.search(rb"\r\nContent-Length: (\d+)", head)
    assert match, head
    length = int(match.group(1))
    while len(rest) < length:
        rest += sock.recv(65536)
    return sock, len(head) + 4 + length


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hs-gzip-cost-"))
    script = work / "server.py"
    script.write_text(SERVER)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    cache = str(work / "cache")
    subprocess.run([sys.executable, str(script), "0", cache], check=True, env=env)  # compile outside valgrind
    port = _free_port()
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--quiet", f"--callgrind-out-file={work}/cg.%p.out",
                             sys.executable, str(script), str(port), cache, "serve"], env=env)
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.2)
        for name, path, accept_encoding in CASES:
            request = (f"GET {path} HTTP/1.1\r\n" + FIELDS.format(accept_encoding=accept_encoding) + "\r\n").encode()
            sock, size = _first_response(port, request)
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=True)
            sent = 0
            while sent < args.requests:
                batch = min(DEPTH, args.requests - sent)
                sock.sendall(request * batch)
                sent += batch
                received = 0
                while received < size * batch:
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        raise SystemExit("the server closed the connection")
                    received += len(chunk)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
            sock.close()
            dump = max(glob.glob(f"{work}/cg.{proc.pid}.out.*"), key=os.path.getmtime)
            total = re.search(r"^(?:summary|totals): (\d+)", Path(dump).read_text(), re.MULTILINE)
            assert total, dump
            print(f"{name:18s} {int(total.group(1)) / args.requests:9.0f} instructions/request", flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
