"""hypersonic.socket: every call's return values, error values and argument checks,
run against each backend (native epoll/kqueue, native poll, pure-Python reference)."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from conftest import IO_WAIT_S, wait_readable

import hypersonic.socket as hs


def test_module_binds_the_api_at_import():
    for name in hs.API_NAMES:
        assert hasattr(hs, name), name
    assert hs.compile_socket_ops() is True
    assert hs.compile_socket_ops() is True  # idempotent


def test_default_backend_is_the_platforms_native_one():
    if os.environ.get("HYPERSONIC_JIT") == "0" or os.environ.get("HYPERSONIC_EVENT_BACKEND"):
        pytest.skip("backend chosen by the environment")
    expected = "epoll" if sys.platform.startswith("linux") else "kqueue"
    assert hs.event_backend() == expected


def test_platform_names_this_os(sock_api):
    expected = {"linux": "linux", "darwin": "darwin"}.get(sys.platform, sys.platform.rstrip("0123456789"))
    assert sock_api.platform() == expected


def test_event_backend_is_the_one_loaded(sock_api, request):
    backend = request.node.callspec.params["sock_api"]
    assert sock_api.event_backend() == ("poll" if backend == "reference" else backend)


def test_constants_are_the_same_in_every_implementation(sock_api):
    assert (sock_api.EV_READ, sock_api.EV_WRITE, sock_api.EV_ERROR) == (1, 2, 4)
    assert (sock_api.RECV_PENDING, sock_api.RECV_CLOSED) == (0, -1)
    assert sock_api.MAX_REQUEST_TARGET == 8192
    assert sock_api.MAX_REQUEST_HEAD == 16384
    assert sock_api.MAX_REQUEST_BODY == 1024 * 1024
    assert sock_api.SEND_STALL_TIMEOUT_MS == 30000


def test_error_values_for_invalid_descriptors(sock_api):
    api = sock_api
    assert api.close_fd(-1) == -1
    assert api.http_accept(-1) == -1
    assert api.http_recv(-1) is None
    assert api.http_recv_status(-1) == api.RECV_CLOSED
    assert api.http_send(-1, "x") == -1
    assert api.http_send_404(-1) == -1
    assert api.http_send_error(-1, 400) == -1
    assert api.create_event_loop(-1) == -1
    assert api.event_add(-1, 0) == -1
    assert api.event_del(-1, 0) == -1
    assert api.ev_poll(-1, 0) == []
    assert api.close_fd(2**40) == -1  # beyond any descriptor: invalid, not an exception


def test_closed_descriptor_gives_error_values(sock_api):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    assert sock_api.http_accept(r) == -1
    assert sock_api.http_recv(r) is None
    assert sock_api.close_fd(r) == -1


@pytest.mark.parametrize(
    "call",
    [
        lambda api: api.close_fd("3"),
        lambda api: api.close_fd(3.0),
        lambda api: api.http_accept(None),
        lambda api: api.http_recv(b"3"),
        lambda api: api.http_recv_status([]),
        lambda api: api.create_listen_socket("8080"),
        lambda api: api.create_listen_socket(0, host=b"127.0.0.1"),
        lambda api: api.create_event_loop(1.5),
        lambda api: api.event_add(3, "4"),
        lambda api: api.event_del("3", 4),
        lambda api: api.ev_poll(3, 1.5),
        lambda api: api.http_send(3, 123),
        lambda api: api.http_send(3, None),
        lambda api: api.http_send(3, "x", content_type=b"text/plain"),
        lambda api: api.http_send("3", "x"),
        lambda api: api.http_send_404(None),
        lambda api: api.http_send_error(3, "400"),
        lambda api: api.close_fd(),
        lambda api: api.close_fd(1, 2),
        lambda api: api.http_send(3),
        lambda api: api.http_send(3, "x", bogus=1),
    ],
)
def test_wrong_argument_types_raise_type_error(sock_api, call):
    with pytest.raises(TypeError):
        call(sock_api)


@pytest.mark.parametrize(
    "call",
    [
        lambda api: api.http_send_error(3, 200),
        lambda api: api.http_send_error(3, 600),
        lambda api: api.http_send(3, "x", "text/plain\r\nX-Injected: 1"),
        lambda api: api.http_send(3, "x", "a" * 1025),
        lambda api: api.event_add(3, 4, 8),
        lambda api: api.create_listen_socket(0, "127.0.0.1\0"),
    ],
)
def test_impossible_values_raise_value_error(sock_api, call):
    with pytest.raises(ValueError):
        call(sock_api)


def test_create_listen_socket_is_nonblocking_and_listening(sock_api):
    fd = sock_api.create_listen_socket(0, "127.0.0.1")
    assert fd > 0
    try:
        assert os.get_blocking(fd) is False
        assert os.get_inheritable(fd) is False
        probe = socket.socket(fileno=os.dup(fd))
        try:
            assert probe.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
            assert probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 0
            assert probe.getsockname()[0] == "127.0.0.1"
        finally:
            probe.close()
    finally:
        assert sock_api.close_fd(fd) == 0


def test_create_listen_socket_default_binds_all_ipv4_interfaces(sock_api):
    fd = sock_api.create_listen_socket(0)
    assert fd > 0
    try:
        probe = socket.socket(fileno=os.dup(fd))
        try:
            assert probe.family == socket.AF_INET
            assert probe.getsockname()[0] == "0.0.0.0"
        finally:
            probe.close()
    finally:
        sock_api.close_fd(fd)


@pytest.mark.parametrize("port", [-1, 65536, 2**40])
def test_create_listen_socket_rejects_bad_ports_with_minus_one(sock_api, port):
    assert sock_api.create_listen_socket(port, "127.0.0.1") == -1


def test_create_listen_socket_unresolvable_host_is_minus_one(sock_api):
    assert sock_api.create_listen_socket(0, "no-such-host.invalid") == -1


def test_create_listen_socket_port_in_use_is_minus_one(sock_api):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)  # no SO_REUSEPORT on this one: the bind must fail
    try:
        assert sock_api.create_listen_socket(blocker.getsockname()[1], "127.0.0.1") == -1
    finally:
        blocker.close()


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT here")
def test_so_reuseport_lets_two_listeners_bind_one_port(sock_api):
    first = sock_api.create_listen_socket(0, "127.0.0.1")
    assert first > 0
    try:
        probe = socket.socket(fileno=os.dup(first))
        port = probe.getsockname()[1]
        probe.close()
        second = sock_api.create_listen_socket(port, "127.0.0.1")
        assert second > 0
        sock_api.close_fd(second)
    finally:
        sock_api.close_fd(first)


def test_dual_stack_listener_accepts_ipv4(sock_api):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    fd = sock_api.create_listen_socket(0, "::")
    if fd == -1:
        pytest.skip("IPv6 not configured")
    try:
        probe = socket.socket(fileno=os.dup(fd))
        port = probe.getsockname()[1]
        probe.close()
        client = socket.create_connection(("127.0.0.1", port), timeout=IO_WAIT_S)
        assert wait_readable(fd)
        accepted = sock_api.http_accept(fd)
        assert accepted > 0
        client.close()
        sock_api.close_fd(accepted)
    finally:
        sock_api.close_fd(fd)


def test_http_accept_without_pending_connection_is_minus_one(sock_api):
    fd = sock_api.create_listen_socket(0, "127.0.0.1")
    try:
        assert sock_api.http_accept(fd) == -1
    finally:
        sock_api.close_fd(fd)


def test_accepted_socket_is_nonblocking_with_nodelay(pair):
    assert os.get_blocking(pair.fd) is False
    probe = socket.socket(fileno=os.dup(pair.fd))
    try:
        assert probe.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        probe.close()


def test_event_loop_reports_listener_readable_then_client_data(sock_api):
    api = sock_api
    listen_fd = api.create_listen_socket(0, "127.0.0.1")
    loop = api.create_event_loop(listen_fd)
    assert loop > 0 and loop != listen_fd
    try:
        assert api.ev_poll(loop, 0) == []
        probe = socket.socket(fileno=os.dup(listen_fd))
        port = probe.getsockname()[1]
        probe.close()
        client = socket.create_connection(("127.0.0.1", port), timeout=IO_WAIT_S)
        assert api.ev_poll(loop, int(IO_WAIT_S * 1000)) == [(listen_fd, api.EV_READ)]
        fd = api.http_accept(listen_fd)
        assert api.event_add(loop, fd) == 0
        assert api.event_add(loop, fd) == -1  # already registered
        assert api.ev_poll(loop, 0) == []
        client.sendall(b"x")
        assert api.ev_poll(loop, int(IO_WAIT_S * 1000)) == [(fd, api.EV_READ)]
        assert api.event_mod(loop, fd, api.EV_READ | api.EV_WRITE) == 0
        assert sorted(api.ev_poll(loop, int(IO_WAIT_S * 1000))) == [(fd, api.EV_READ | api.EV_WRITE)]
        assert api.event_mod(loop, fd, api.EV_WRITE) == 0
        assert api.ev_poll(loop, int(IO_WAIT_S * 1000)) == [(fd, api.EV_WRITE)]
        assert api.event_mod(loop, fd, api.EV_READ) == 0
        assert api.event_del(loop, fd) == 0
        assert api.event_del(loop, fd) == -1  # not registered any more
        assert api.event_mod(loop, fd, api.EV_READ) == -1
        assert api.ev_poll(loop, 0) == []
        client.close()
        assert api.close_fd(fd) == 0
    finally:
        assert api.close_fd(loop) == 0
        assert api.close_fd(listen_fd) == 0


def test_ev_poll_reports_peer_close_as_readable(pair):
    api = pair.api
    loop = api.create_event_loop(pair.listen_fd)
    try:
        assert api.event_add(loop, pair.fd) == 0
        pair.client.close()
        events = api.ev_poll(loop, int(IO_WAIT_S * 1000))
        assert len(events) == 1 and events[0][0] == pair.fd
        assert events[0][1] & api.EV_READ
        assert api.http_recv(pair.fd) is None
        assert api.http_recv_status(pair.fd) == api.RECV_CLOSED
    finally:
        api.close_fd(loop)


def test_ev_poll_reports_reset_connection_as_error_or_readable(pair):
    api = pair.api
    loop = api.create_event_loop(pair.listen_fd)
    try:
        api.event_add(loop, pair.fd, api.EV_READ | api.EV_WRITE)
        pair.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        pair.client.close()  # linger 0: RST
        flags = 0
        for _ in range(20):  # bounded: the RST arrives on loopback at once
            events = dict(api.ev_poll(loop, int(IO_WAIT_S * 1000)))
            flags = events.get(pair.fd, 0)
            if flags & (api.EV_ERROR | api.EV_READ):
                break
        assert flags & (api.EV_ERROR | api.EV_READ)
        assert api.http_recv(pair.fd) is None
        assert api.http_recv_status(pair.fd) == api.RECV_CLOSED
    finally:
        api.close_fd(loop)


def test_closing_a_registered_fd_removes_it_from_the_loop(pair):
    api = pair.api
    loop = api.create_event_loop(pair.listen_fd)
    try:
        api.event_add(loop, pair.fd)
        pair.client.sendall(b"x")
        assert wait_readable(pair.fd)
        assert api.close_fd(pair.fd) == 0
        assert api.ev_poll(loop, 0) == []
        pair.fd = -1
    finally:
        api.close_fd(loop)


def test_close_fd_closes_a_loop(sock_api):
    listen_fd = sock_api.create_listen_socket(0, "127.0.0.1")
    loop = sock_api.create_event_loop(listen_fd)
    assert sock_api.close_fd(loop) == 0
    assert sock_api.close_fd(loop) == -1
    assert sock_api.ev_poll(loop, 0) == []
    assert sock_api.close_fd(listen_fd) == 0


def test_event_add_rejects_a_closed_fd(sock_api):
    listen_fd = sock_api.create_listen_socket(0, "127.0.0.1")
    loop = sock_api.create_event_loop(listen_fd)
    try:
        r, w = os.pipe()
        os.close(r)
        os.close(w)
        assert sock_api.event_add(loop, r) == -1
    finally:
        sock_api.close_fd(loop)
        sock_api.close_fd(listen_fd)


def test_load_rejects_unknown_backends():
    with pytest.raises(ValueError, match="backend"):
        hs.load("select")
    with pytest.raises(TypeError):
        hs.load(3)  # type: ignore[arg-type]
    foreign = "kqueue" if sys.platform.startswith("linux") else "epoll"
    with pytest.raises(ValueError, match="not available"):
        hs.load(foreign)


def test_two_threads_wait_on_their_own_loops_at_once(sock_api):
    import threading

    api = sock_api
    listeners = [api.create_listen_socket(0, "127.0.0.1") for _ in range(2)]
    loops = [api.create_event_loop(fd) for fd in listeners]
    results = {}

    def wait(i):
        results[i] = api.ev_poll(loops[i], int(IO_WAIT_S * 1000))

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(2)]
    clients = []
    try:
        for t in threads:
            t.start()
        for fd in listeners:
            probe = socket.socket(fileno=os.dup(fd))
            clients.append(socket.create_connection(probe.getsockname(), timeout=IO_WAIT_S))
            probe.close()
        for t in threads:
            t.join(IO_WAIT_S * 2)
        assert results == {0: [(listeners[0], api.EV_READ)], 1: [(listeners[1], api.EV_READ)]}
    finally:
        for c in clients:
            c.close()
        for fd in loops + listeners:
            api.close_fd(fd)


def test_module_level_calls_are_the_native_functions_themselves():
    if hs._active is None or hs._active.__name__.endswith("_socket_ref"):
        pytest.skip("pure-Python reference selected")
    for name in ("platform", "event_backend", "http_recv", "http_send", "ev_poll"):
        assert getattr(hs, name) is getattr(hs._active, name)
        assert type(getattr(hs, name)).__name__ == "builtin_function_or_method"


def test_compile_socket_ops_rejects_a_non_path_cache_dir():
    with pytest.raises(TypeError, match="cache_dir"):
        hs.compile_socket_ops(cache_dir=3)  # type: ignore[arg-type]
    assert hs.compile_socket_ops() is True
