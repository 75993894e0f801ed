"""Syscall-level check (Linux, strace): a loop that calls http_recv until None
makes no recv() that fails with EAGAIN - one read per readable event."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

SCRIPT = r"""
import os, socket, sys
import hypersonic.socket as hs
api = hs.load(sys.argv[1])
listen_fd = api.create_listen_socket(0, "127.0.0.1")
with socket.socket(fileno=os.dup(listen_fd)) as probe:
    port = probe.getsockname()[1]
loop = api.create_event_loop(listen_fd)
client = socket.create_connection(("127.0.0.1", port), timeout=5)
assert api.ev_poll(loop, 5000) == [(listen_fd, api.EV_READ)]
fd = api.http_accept(listen_fd)
api.event_add(loop, fd)
served = 0
for i in range(20):
    client.sendall(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i * (1 + i % 3))  # 1 to 3 pipelined
    assert (fd, api.EV_READ) in api.ev_poll(loop, 5000)
    while True:  # the documented drain loop
        req = api.http_recv(fd)
        if req is None:
            break
        api.http_send(fd, "ok")
        served += 1
    assert api.http_recv_status(fd) == api.RECV_PENDING
    expected = 1 + i % 3
    got = b""
    while got.count(b"\r\n\r\nok") < expected:
        got += client.recv(65536)
print("served", served)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not shutil.which("strace"), reason="needs Linux strace")
@pytest.mark.parametrize("backend", ["epoll", "poll"])
def test_drain_loop_makes_no_recv_that_says_eagain(tmp_path, socket_cache_dir, backend):
    from hypersonic.socket import load

    load(backend, cache_dir=socket_cache_dir)  # build outside strace
    trace = tmp_path / "trace.txt"
    env = dict(os.environ, HYPERSONIC_CACHE_DIR=str(socket_cache_dir))
    res = subprocess.run(
        ["strace", "-f", "-e", "trace=recvfrom,recvmsg,read", "-o", str(trace), sys.executable, "-c", SCRIPT, backend],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    if res.returncode != 0 and "ptrace" in res.stderr:
        pytest.skip("ptrace not permitted here")
    assert res.returncode == 0, res.stderr
    assert f"served {sum(1 + i % 3 for i in range(20))}" in res.stdout
    eagain = [line for line in trace.read_text().splitlines() if "EAGAIN" in line]
    assert eagain == []
