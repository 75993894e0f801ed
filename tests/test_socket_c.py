"""C-level checks of the socket layer's own files: every backend compiles
warning-free under gcc and clang (kqueue against a minimal stand-in header,
since it cannot run here), and hs_conn's read path under ASan+UBSan: one recv
per readable event unless the read filled the space offered, pipelining,
chunked bodies and limits, with recv counted by interposition."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import textwrap

import pytest

from hypersonic.jit import CSRC_DIR

COMPILERS = [cc for cc in ("gcc", "clang") if shutil.which(cc)]
WARN = ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-Wno-unused-function"]

# Enough of <sys/event.h> (FreeBSD/macOS layout) to type-check hs_event_kqueue.c on Linux.
FAKE_EVENT_H = textwrap.dedent(
    """
    #include <stdint.h>
    #include <time.h>
    struct kevent { uintptr_t ident; short filter; unsigned short flags; unsigned int fflags;
                    int64_t data; void *udata; };
    #define EVFILT_READ (-1)
    #define EVFILT_WRITE (-2)
    #define EV_ADD 0x0001
    #define EV_DELETE 0x0002
    #define EV_ENABLE 0x0004
    #define EV_RECEIPT 0x0040
    #define EV_ERROR 0x4000
    #define EV_EOF 0x8000
    #define EV_SET(kevp, a, b, c, d, e, f) do { struct kevent *k_ = (kevp); k_->ident = (a); \\
        k_->filter = (b); k_->flags = (c); k_->fflags = (d); k_->data = (e); k_->udata = (f); } while (0)
    int kqueue(void);
    int kevent(int kq, const struct kevent *changes, int nchanges, struct kevent *events, int nevents,
               const struct timespec *timeout);
    """
)

UNITY = '#include "hs_parser.c"\n#include "hs_event.c"\n#include "hs_net.c"\n#include "hs_conn.c"\nint main(void) { return 0; }\n'


@pytest.mark.skipif(not COMPILERS, reason="no C compiler")
@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("backend", ["", "-DHS_EVENT_BACKEND_POLL", "-DHS_EVENT_BACKEND_KQUEUE"])
def test_socket_layer_compiles_warning_free(tmp_path, cc, backend):
    (tmp_path / "sys").mkdir()
    (tmp_path / "sys" / "event.h").write_text(FAKE_EVENT_H)
    src = tmp_path / "unity.c"
    src.write_text(UNITY)
    cmd = [cc, *WARN, "-D_GNU_SOURCE", "-fsyntax-only", f"-I{CSRC_DIR}", str(src)]
    if backend:
        cmd.insert(1, backend)
    if backend == "-DHS_EVENT_BACKEND_KQUEUE":
        cmd.insert(1, f"-I{tmp_path}")  # the stand-in <sys/event.h>
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


@pytest.mark.skipif(not COMPILERS, reason="no C compiler")
@pytest.mark.parametrize("cc", COMPILERS)
def test_socket_module_compiles_warning_free(tmp_path, cc):
    include = sysconfig.get_paths()["include"]
    cmd = [cc, *WARN, "-DHS_MODULE_NAME=_hs_check", "-fsyntax-only", f"-I{CSRC_DIR}", f"-I{include}",
           str(CSRC_DIR / "hs_socketmod.c")]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


CONN_HARNESS = r"""
#include <sys/types.h>
#include <sys/socket.h>
static int recv_calls;
static ssize_t counting_recv(int fd, void *buf, size_t n, int flags)
{
    recv_calls++;
    return recv(fd, buf, n, flags);
}
#include "hs_parser.c"
#define recv counting_recv
#include "hs_conn.c"
#undef recv
#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "line %d: %s\n", __LINE__, #x); return 1; } } while (0)

static int put(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w <= 0) return -1;
        s += w; n -= (size_t)w;
    }
    return 0;
}

int main(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int big = 1 << 20;
    CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big) == 0);
    CHECK(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big) == 0);
    CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
    hs_limits lim;
    hs_limits_default(&lim);
    hs_conns table = {0};
    hs_conn *c = hs_conns_get(&table, sv[1], 1);
    CHECK(c && c->fd == sv[1]);
    CHECK(hs_conns_get(&table, sv[1], 0) == c);
    CHECK(hs_conns_get(&table, sv[1] + 1000, 0) == NULL);

    /* nothing to read: one recv, AGAIN */
    recv_calls = 0;
    CHECK(hs_conn_recv(c) == HS_RECV_AGAIN && recv_calls == 1);
    CHECK(hs_conn_parse(c, &lim) == HS_REQ_PARTIAL);

    /* a small request: exactly one recv (no second one just to see EAGAIN) */
    const char *two = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz";
    CHECK(put(sv[0], two, strlen(two)) == 0);
    recv_calls = 0;
    CHECK(hs_conn_recv(c) == (ssize_t)strlen(two) && recv_calls == 1);
    CHECK(hs_conn_parse(c, &lim) == HS_REQ_READY);
    CHECK(c->req.target_len == 2 && memcmp(c->req.target, "/a", 2) == 0 && c->body_len == 0);
    CHECK(hs_conn_parse(c, &lim) == HS_REQ_READY); /* idempotent until consumed */
    hs_conn_consume(c);
    CHECK(hs_conn_parse(c, &lim) == HS_REQ_READY); /* pipelined: no syscall */
    CHECK(c->body_len == 3 && memcmp(c->body, "xyz", 3) == 0);
    hs_conn_consume(c);
    CHECK(hs_conn_parse(c, &lim) == HS_REQ_PARTIAL && c->rbuf.len == 0);

    /* more than the space offered: reads again only because the first read filled it */
    static char body[200000];
    memset(body, 'b', sizeof body);
    char head[128];
    int hl = snprintf(head, sizeof head, "PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", sizeof body);
    CHECK(put(sv[0], head, (size_t)hl) == 0 && put(sv[0], body, sizeof body) == 0);
    size_t got = 0;
    int events = 0, most_calls = 0;
    for (; events < 100 && hs_conn_parse(c, &lim) != HS_REQ_READY; events++) {
        recv_calls = 0;
        ssize_t n = hs_conn_recv(c);
        CHECK(n > 0);
        got += (size_t)n;
        if (recv_calls > most_calls)
            most_calls = recv_calls;
    }
    CHECK(got == (size_t)hl + sizeof body);
    CHECK(most_calls > 1); /* a read that filled the space offered is followed by another */
    CHECK(c->body_len == sizeof body && c->body[0] == 'b' && c->body[sizeof body - 1] == 'b');
    hs_conn_consume(c);
    recv_calls = 0;
    CHECK(hs_conn_recv(c) == HS_RECV_AGAIN && recv_calls == 1);

    /* chunked body decoded in place, split at every byte, then a pipelined request */
    const char *chunked = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
                          "4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\nT: v\r\n\r\nGET /n HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t head_end = strstr(chunked, "\r\n\r\n") + 4 - chunked;
    int ready = 0, saw_continue = 0;
    for (size_t i = 0; i < strlen(chunked) && !ready; i++) {
        CHECK(put(sv[0], chunked + i, 1) == 0);
        CHECK(hs_conn_recv(c) == 1);
        int r = hs_conn_parse(c, &lim);
        CHECK(r != HS_REQ_ERROR);
        if (i + 1 == head_end)
            saw_continue = c->continue_pending;
        ready = r == HS_REQ_READY;
    }
    CHECK(ready && saw_continue && c->continue_pending == 0);
    CHECK(c->body_len == 9 && memcmp(c->body, "wikipedia", 9) == 0);
    CHECK(c->req.method_len == 4 && memcmp(c->req.method, "POST", 4) == 0);
    hs_conn_consume(c);
    /* the rest of the stream (the pipelined GET) has not been sent yet */
    const char *rest = strstr(chunked, "GET /n");
    CHECK(put(sv[0], rest, strlen(rest)) == 0);
    CHECK(hs_conn_recv(c) == (ssize_t)strlen(rest));
    CHECK(hs_conn_parse(c, &lim) == HS_REQ_READY && c->req.target_len == 2);
    hs_conn_consume(c);

    /* limits: a too large Content-Length is rejected at once, and stays rejected */
    const char *huge = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n";
    CHECK(put(sv[0], huge, strlen(huge)) == 0);
    CHECK(hs_conn_recv(c) > 0);
    CHECK(hs_conn_parse(c, &lim) == HS_REQ_ERROR && c->error_status == 413);
    CHECK(hs_conn_parse(c, &lim) == HS_REQ_ERROR);

    /* reset keeps buffers, clears the state */
    hs_conn_reset(c, sv[1]);
    CHECK(c->error_status == 0 && c->rbuf.len == 0 && hs_conn_parse(c, &lim) == HS_REQ_PARTIAL);

    /* write queue */
    CHECK(hs_conn_queue(c, "HTTP/1.1 200 OK\r\n\r\n", 19) == 0 && hs_conn_pending(c) == 19);
    CHECK(hs_conn_flush(c) == HS_FLUSH_DONE && hs_conn_pending(c) == 0);
    char echo[32];
    CHECK(read(sv[0], echo, sizeof echo) == 19);

    /* peer closes */
    CHECK(close(sv[0]) == 0);
    CHECK(hs_conn_recv(c) == HS_RECV_CLOSED);
    hs_conns_drop(&table, sv[1]);
    CHECK(hs_conns_get(&table, sv[1], 0) == NULL);
    hs_conns_drop(&table, sv[1]); /* twice is harmless */
    CHECK(close(sv[1]) == 0);
    free(table.by_fd);
    puts("ok");
    return 0;
}
"""


def _asan_works(cc: str, tmp_path) -> bool:
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    res = subprocess.run([cc, "-fsanitize=address,undefined", str(probe), "-o", str(tmp_path / "probe")],
                         capture_output=True, check=False)
    return res.returncode == 0


@pytest.mark.skipif(not COMPILERS, reason="no C compiler")
@pytest.mark.parametrize("cc", COMPILERS)
def test_conn_read_path_under_sanitizers(tmp_path, cc):
    flags = ["-g", "-O1", "-D_GNU_SOURCE", *WARN]
    if _asan_works(cc, tmp_path):
        flags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
    src = tmp_path / "conn_harness.c"
    src.write_text(CONN_HARNESS)
    exe = tmp_path / "conn_harness"
    res = subprocess.run([cc, *flags, f"-I{CSRC_DIR}", str(src), "-o", str(exe)], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr
    # Its own sanitizer runtime is linked in: drop a preloaded one (tests/sanitize.sh sets LD_PRELOAD).
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, check=False, env=env)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr
