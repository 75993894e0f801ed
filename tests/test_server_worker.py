"""The worker interface the supervisor uses: ``_serve_worker(listen_fd)`` runs
the loop in this process on a socket made elsewhere, ``_request_stop()`` (from
another thread here; from a signal handler in workers) ends it after a drain
bounded by ``drain_timeout``. The loop runs in the test's main thread; a helper
thread plays the client and always requests the stop, so nothing can hang."""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, List

from hypersonic import Hypersonic

from _http_wire import connect, get
from _server_util import TEST_CACHE_DIR

#: Bound on the helper thread's work and on the loop's return.
BOUND = 10.0


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _app(**kw) -> Hypersonic:
    app = Hypersonic(cache_dir=TEST_CACHE_DIR, **kw)
    app.get("/", lambda: "static")
    app.get("/dyn", lambda req: "dynamic " + req.path)
    app.compile()
    return app


def _serve_with_client(app: Hypersonic, client: Callable[[int], None]) -> List[BaseException]:
    listener = _listener()
    port = listener.getsockname()[1]
    errors: List[BaseException] = []

    def run_client() -> None:
        try:
            client(port)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            app._request_stop()

    thread = threading.Thread(target=run_client, daemon=True)
    thread.start()
    app._serve_worker(listener.detach())
    thread.join(BOUND)
    assert not thread.is_alive()
    return errors


def test_serve_worker_serves_until_request_stop_and_closes_the_listener() -> None:
    app = _app()
    seen: List[bytes] = []

    def client(port: int) -> None:
        sock, reader = connect(port)
        with sock:
            sock.sendall(get("/") + get("/dyn"))
            seen.append(reader.response().body)
            seen.append(reader.response().body)

    listener_port: List[int] = []

    def client_and_port(port: int) -> None:
        listener_port.append(port)
        client(port)

    assert _serve_with_client(app, client_and_port) == []
    assert seen == [b"static", b"dynamic /dyn"]
    stats = app.stats()
    assert stats["requests"] == 2 and stats["python_calls"] == 1 and stats["open_connections"] == 0
    try:  # the listening socket is closed: nothing accepts any more
        socket.create_connection(("127.0.0.1", listener_port[0]), timeout=1).close()
        accepted = True
    except OSError:
        accepted = False
    assert not accepted


def test_drain_gives_up_on_unfinished_request_after_drain_timeout() -> None:
    app = _app(drain_timeout=1)
    closed: List[bool] = []

    def client(port: int) -> None:
        sock, reader = connect(port)
        with sock:
            sock.sendall(get("/"))
            reader.response()
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")  # a request that never completes
            time.sleep(0.2)
            app._request_stop()
            sock.settimeout(BOUND)
            closed.append(reader.at_eof())

    start = time.monotonic()
    assert _serve_with_client(app, client) == []
    assert closed == [True]
    assert time.monotonic() - start < BOUND  # returned by itself, bounded by drain_timeout


def test_request_stop_before_serve_returns_at_once() -> None:
    app = _app()
    app._request_stop()
    listener = _listener()
    app._serve_worker(listener.detach())
    assert app.stats()["requests"] == 0


def test_apps_with_identical_routes_serve_their_own_handlers() -> None:
    first = Hypersonic(cache_dir=TEST_CACHE_DIR)
    first.get("/who", lambda req: "first")
    second = Hypersonic(cache_dir=TEST_CACHE_DIR)
    second.get("/who", lambda req: "second")
    first.compile()
    second.compile()  # same generated C: the same module is loaded for both
    for app, expected in ((first, b"first"), (second, b"second"), (first, b"first")):
        got: List[bytes] = []

        def client(port: int) -> None:
            sock, reader = connect(port)
            with sock:
                sock.sendall(get("/who"))
                got.append(reader.response().body)

        assert _serve_with_client(app, client) == []
        assert got == [expected]
