"""hypersonic.socket - JIT-compiled socket operations (the seed's Hypersonic::Socket).

Importing this module compiles the C in ``hypersonic/csrc`` (or loads it from the
cache, ``./_hypersonic_socket_cache`` by default) and binds the native calls at
module level, so ``hypersonic.socket.http_recv`` *is* the C function: no Python
frame between the caller and the syscall.

The calls (errors are return values, never exceptions, except ``TypeError`` for
a wrong argument type and ``ValueError`` for an impossible value)::

    platform()                        'linux' | 'darwin' | 'freebsd' | 'openbsd' | 'netbsd'
    event_backend()                   'epoll' | 'kqueue' | 'poll'
    compile_socket_ops(cache_dir=None) True (idempotent; runs on import)
    create_listen_socket(port, host=None)  listening fd, or -1
    create_event_loop(listen_fd)      loop fd with listen_fd registered for reads, or -1
    event_add(loop_fd, fd, flags=EV_READ) / event_mod(loop_fd, fd, flags)  0, or -1
    event_del(loop_fd, fd)            0, or -1
    ev_poll(loop_fd, timeout_ms)      [(fd, flags), ...]; flags are EV_READ|EV_WRITE|EV_ERROR bits
    http_accept(listen_fd)            client fd (non-blocking), or -1
    http_recv(fd)                     [method, path, body, keep_alive, fd] or None
    http_recv_status(fd)              RECV_PENDING (0), RECV_CLOSED (-1), or 400/413/414/431/501/505
    http_send(fd, body, content_type='text/plain')  bytes written, or -1
    http_send_404(fd)                 bytes written, or -1
    http_send_error(fd, status)       bytes written, or -1 (Connection: close)
    close_fd(fd)                      0, or -1

How a custom loop reads requests: on a readable event call ``http_recv(fd)``
until it returns ``None`` (a buffered pipelined request comes out without a new
event), then ask ``http_recv_status(fd)``: ``RECV_PENDING`` means "keep the
connection, more bytes are needed"; ``RECV_CLOSED`` means the peer closed or an
I/O error happened (``close_fd`` it); an HTTP status means the request was
rejected (``http_send_error(fd, status)`` then ``close_fd``). ``path`` is the
request-target as sent (query included; an absolute-form target is reduced to
its origin-form). See docs/SOCKET.md.

Environment:
    HYPERSONIC_EVENT_BACKEND=epoll|kqueue|poll  the backend compiled in (default: the platform's)
    HYPERSONIC_JIT=0                            use the pure-Python reference instead of C
    HYPERSONIC_CACHE_DIR, HYPERSONIC_JIT_CFLAGS see hypersonic.jit
"""

from __future__ import annotations

import logging
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple, Union

__all__ = [
    "BACKENDS",
    "EV_ERROR",
    "EV_READ",
    "EV_WRITE",
    "MAX_REQUEST_BODY",
    "MAX_REQUEST_HEAD",
    "MAX_REQUEST_TARGET",
    "RECV_CLOSED",
    "RECV_PENDING",
    "SEND_STALL_TIMEOUT_MS",
    "available_backends",
    "close_fd",
    "compile_socket_ops",
    "create_event_loop",
    "create_listen_socket",
    "ev_poll",
    "event_add",
    "event_backend",
    "event_del",
    "event_mod",
    "http_accept",
    "http_recv",
    "http_recv_status",
    "http_send",
    "http_send_404",
    "http_send_error",
    "load",
    "platform",
]

log = logging.getLogger("hypersonic.socket")

#: Every backend name ``load`` understands; "reference" is the pure-Python one.
BACKENDS = ("epoll", "kqueue", "poll", "reference")

#: Default cache directory name (the seed's).
DEFAULT_CACHE_NAME = "_hypersonic_socket_cache"

#: The calls every implementation (native or reference) provides.
API_NAMES = (
    "platform",
    "event_backend",
    "create_listen_socket",
    "create_event_loop",
    "event_add",
    "event_mod",
    "event_del",
    "ev_poll",
    "http_accept",
    "http_recv",
    "http_recv_status",
    "http_send",
    "http_send_404",
    "http_send_error",
    "close_fd",
    "EV_READ",
    "EV_WRITE",
    "EV_ERROR",
    "RECV_PENDING",
    "RECV_CLOSED",
    "MAX_REQUEST_TARGET",
    "MAX_REQUEST_HEAD",
    "MAX_REQUEST_BODY",
    "SEND_STALL_TIMEOUT_MS",
)


def _native_backend() -> str:
    if sys.platform.startswith("linux"):
        return "epoll"
    if sys.platform == "darwin" or sys.platform.startswith(("freebsd", "openbsd", "netbsd", "dragonfly")):
        return "kqueue"
    return "poll"


def available_backends() -> Tuple[str, ...]:
    """Backends usable on this machine: the native one, "poll", and "reference"."""
    native = _native_backend()
    return tuple(dict.fromkeys((native, "poll", "reference")))


def _backend_defines(backend: str) -> Dict[str, Optional[str]]:
    native = _native_backend()
    if backend == "poll":
        return {"HS_EVENT_BACKEND_POLL": None}
    if backend == native:
        return {}
    raise ValueError(
        f"event backend {backend!r} is not available on {sys.platform} (available: {', '.join(available_backends())})"
    )


def _requested_backend() -> str:
    if os.environ.get("HYPERSONIC_JIT", "").strip() == "0":
        return "reference"
    requested = os.environ.get("HYPERSONIC_EVENT_BACKEND", "").strip().lower()
    if not requested:
        return _native_backend()
    if requested not in BACKENDS:
        raise ValueError(
            f"HYPERSONIC_EVENT_BACKEND={requested!r} is not a backend (choose one of: {', '.join(BACKENDS[:3])})"
        )
    return requested


def load(backend: Optional[str] = None, *, cache_dir: Union[str, "os.PathLike[str]", None] = None) -> ModuleType:
    """Return an implementation of this API as a module object.

    backend: "epoll", "kqueue", "poll" (native, compiled with that event backend)
        or "reference" (the pure-Python implementation); None: what the
        environment selects (HYPERSONIC_JIT / HYPERSONIC_EVENT_BACKEND), else
        the platform's native backend. Several backends can be loaded in one
        process (the tests run against each).
    cache_dir: where compiled modules are cached (see hypersonic.jit).
    Raises ValueError for an unknown or unavailable backend, and
    hypersonic.jit.CompilerNotFound / CompileError when the C cannot be built.
    """
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be a path (str or os.PathLike) or None, not {type(cache_dir).__name__}")
    if backend is None:
        backend = _requested_backend()
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str or None, not {type(backend).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "reference":
        from . import _socket_ref

        return _socket_ref
    from .jit import load_extension

    return load_extension(
        "hs_socketmod.c",
        default_cache_name=DEFAULT_CACHE_NAME,
        cache_dir=cache_dir,
        defines=_backend_defines(backend),
    )


_active: Optional[ModuleType] = None


def compile_socket_ops(cache_dir: Union[str, "os.PathLike[str]", None] = None) -> bool:
    """Compile the socket operations (or load them from the cache) and bind them here.

    Runs on import; calling it again is cheap and returns True again. cache_dir
    defaults to $HYPERSONIC_CACHE_DIR, else ./_hypersonic_socket_cache (the
    user cache dir when that is not writable).
    """
    global _active
    if _active is None or cache_dir is not None:
        module = load(None, cache_dir=cache_dir)
        globals().update({name: getattr(module, name) for name in API_NAMES})
        _active = module
        log.debug("hypersonic.socket bound to %s (%s)", getattr(module, "__name__", module), module.event_backend())
    return True


if TYPE_CHECKING:  # the signatures of the calls bound by compile_socket_ops
    EV_READ: int
    EV_WRITE: int
    EV_ERROR: int
    RECV_PENDING: int
    RECV_CLOSED: int
    MAX_REQUEST_TARGET: int
    MAX_REQUEST_HEAD: int
    MAX_REQUEST_BODY: int
    SEND_STALL_TIMEOUT_MS: int

    def platform() -> str:
        """'linux', 'darwin', 'freebsd', 'openbsd' or 'netbsd'; raises OSError elsewhere."""

    def event_backend() -> str:
        """'epoll', 'kqueue' or 'poll': the event backend compiled in."""

    def create_listen_socket(port: int, host: Optional[str] = None) -> int:
        """Non-blocking listening TCP socket (SO_REUSEADDR, SO_REUSEPORT) on host
        (None: every IPv4 interface; "::": dual-stack) and port; the fd, or -1."""

    def create_event_loop(listen_fd: int) -> int:
        """A new event loop with listen_fd registered for reads: its fd, or -1."""

    def event_add(loop_fd: int, fd: int, flags: int = ...) -> int:
        """Watch fd for flags (EV_READ by default, or EV_READ|EV_WRITE). 0, or -1."""

    def event_mod(loop_fd: int, fd: int, flags: int) -> int:
        """Change what fd is watched for. 0, or -1."""

    def event_del(loop_fd: int, fd: int) -> int:
        """Stop watching fd. 0, or -1."""

    def ev_poll(loop_fd: int, timeout_ms: int) -> List[Tuple[int, int]]:
        """Wait up to timeout_ms (-1: forever) for events: [(fd, flags), ...] ([] on
        timeout, on a signal, or for a bad loop_fd)."""

    def http_accept(listen_fd: int) -> int:
        """Accept one connection: a non-blocking client fd, or -1."""

    def http_recv(fd: int) -> Optional[List[Union[str, bytes, int]]]:
        """[method, path, body, keep_alive, fd] for one complete request, else None
        (see http_recv_status). Call until None: pipelined requests are buffered."""

    def http_recv_status(fd: int) -> int:
        """After http_recv returned None: RECV_PENDING, RECV_CLOSED, or the HTTP
        status (400, 413, 414, 431, 501, 505) of a rejected request."""

    def http_send(fd: int, body: Union[str, bytes], content_type: str = "text/plain") -> int:
        """Write a whole 200 response; bytes written, or -1 (never a silent truncation)."""

    def http_send_404(fd: int) -> int:
        """Write a 404 Not Found response; bytes written, or -1."""

    def http_send_error(fd: int, status: int) -> int:
        """Write an error response (status 400..599, Connection: close); bytes written, or -1."""

    def close_fd(fd: int) -> int:
        """Close fd (a socket or an event loop) and drop its buffers. 0, or -1."""


compile_socket_ops()
