"""Pre-fork workers and their supervisor: ``app.run(workers=N)`` lands here.

Theory of operation
-------------------
The parent process never serves HTTP. It

1. resolves ``host``/``port`` once and probe-binds the address *without*
   SO_REUSEPORT, so a port already taken (by anyone, including another
   Hypersonic) or an unknown host raises :class:`ServerStartupError` before any
   process is forked (port 0 is resolved here to one concrete free port that
   every worker then shares);
2. opens one non-blocking SO_REUSEPORT listener per worker slot on that address
   (the kernel spreads connections over them) and forks ``workers`` children.
   Each child serves its slot's listener (an inherited copy), reports
   ``ready`` (or the reason it could not start) over a pipe, and runs
   ``app._serve_worker(listen_fd)`` until a stop is requested. The parent keeps
   its copy of every slot's listener, so a worker that stops (recycled,
   replaced on SIGHUP, or crashed and restarted at once) never closes the
   socket: connections queued on it wait for the slot's next process instead
   of being reset. A slot restarted with a backoff (crash loop) gets a fresh
   listener, so meanwhile the kernel sends its clients to the other slots.
   Children end with :func:`os._exit`, so they never run the parent's
   ``atexit`` handlers;
3. supervises: one ``selectors`` loop waits on the signal wake-up pipe
   (:func:`signal.set_wakeup_fd`) and the workers' status pipes. A worker that
   dies after it was ready is replaced, immediately the first time and with an
   exponential backoff while it keeps dying young (a crash loop). A worker that
   fails *before* it was ready (its listener could not be opened), or whose
   ``_serve_worker`` raises right at the start before taking any connection, is
   fatal: the others are stopped and :func:`serve` raises
   :class:`ServerStartupError` with the reason, rather than respawning forever;
4. on SIGTERM or SIGINT sends SIGTERM to every worker (each stops accepting and
   finishes in-flight requests), waits up to ``app.drain_timeout`` plus a short
   grace, SIGKILLs stragglers, reaps everything and returns normally (so the
   process exits 0). A second SIGINT during the drain kills the workers at once.

In a worker, SIGTERM and SIGINT call ``app._request_stop()`` (SIGINT too, since
Ctrl-C in a terminal signals the whole process group). On Linux a worker also
gets SIGTERM if the supervisor itself dies (``PR_SET_PDEATHSIG``), so killing
the parent with SIGKILL does not leave orphans serving the port.

:func:`serve_in_process` is the same contract for ``workers=1`` without a
fork: one listener, the signal handlers, ``_serve_worker`` in this process.

Worker lifecycle (recycling and reload)
---------------------------------------
With :class:`WorkerLimits` (``max_requests`` + ``max_requests_jitter``,
``max_worker_rss``) each worker runs a small monitor thread that reads the
loop's request counter and the process RSS every
:data:`LIMIT_CHECK_INTERVAL_SECONDS`. Past a limit, it tells the parent
("retire") over its status pipe *and keeps serving*. The parent forks the
replacement into the same slot; only when the replacement reports ready (its
own listener is open) does the parent send SIGTERM to the old worker, which
then stops accepting, finishes its in-flight requests and exits. So at every
moment at least one listener of the slot accepts. SIGHUP replaces every worker
the same way, one slot at a time (the next starts when the previous old worker
has exited). With a ``reload`` callable (the CLI passes one that re-imports the
app module and compiles it), the parent calls it first and forks the new
workers from the app it returns; a failing reload is logged and the old
workers keep serving.

Listeners: by default each worker opens its own SO_REUSEPORT TCP listener.
With ``uds=`` (a Unix domain socket path) or ``fd=`` (an inherited listening
socket, e.g. systemd socket activation) the parent holds the one listening
socket and every worker accepts on its inherited copy; the parent's copy keeps
the socket open across worker replacements.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import selectors
import signal
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

__all__ = [
    "ListenAddress",
    "WorkerLimits",
    "open_unix_listener",
    "inherited_listener",
    "systemd_listen_fd",
    "ServerStartupError",
    "open_listener",
    "resolve_listen_address",
    "serve",
    "serve_in_process",
    "startup_message",
]

log = logging.getLogger("hypersonic.supervisor")

#: listen(2) backlog of every worker's listening socket (matches HS_LISTEN_BACKLOG).
LISTEN_BACKLOG = 4096
#: Drain timeout used when the app object does not say (matches Hypersonic's default).
DEFAULT_DRAIN_TIMEOUT = 5.0
#: Extra seconds the supervisor waits past ``drain_timeout`` before SIGKILL, so a
#: worker that drains for exactly ``drain_timeout`` can still close up and exit.
EXIT_GRACE_SECONDS = 1.0
#: A worker that dies less than this many seconds after it started counts as
#: crashing young; consecutive young deaths grow the restart backoff.
CRASH_LOOP_WINDOW_SECONDS = 2.0
#: ``_serve_worker`` raising within this many seconds of the server's start, before
#: it accepted any connection (``app.stats()["connections"] == 0``), is a startup
#: failure (the server stops with the reason), not a crash to restart.
STARTUP_WINDOW_SECONDS = 2.0
#: First restart delay of a crash loop, doubled per consecutive young death ...
RESTART_BACKOFF_BASE_SECONDS = 0.25
#: ... up to this ceiling.
RESTART_BACKOFF_MAX_SECONDS = 30.0
#: Longest the supervisor sleeps between checks when nothing is scheduled.
IDLE_POLL_SECONDS = 1.0
#: Maximum bytes read from a status pipe or the wake-up pipe at once.
PIPE_READ_SIZE = 4096

#: Worker exit status: stopped on request.
EXIT_OK = 0
#: Worker exit status: ``_serve_worker`` raised (logged by the worker).
EXIT_CRASHED = 1
#: Worker exit status: could not start (reason sent over the status pipe).
EXIT_STARTUP_FAILED = 3

#: Status-pipe messages, one per worker lifetime: ready, or failed + reason.
_STATUS_READY = b"R"
_STATUS_FAILED = b"F"
#: ... and, after ready, "_serve_worker raised before accepting any connection" + reason.
_STATUS_CRASHED_IDLE = b"C"
#: Longest reason sent over a status pipe (one pipe write stays atomic).
STATUS_REASON_MAX_BYTES = 1024

#: ... and, after ready, "past a recycling limit: replace me" + reason.
_STATUS_RETIRE = b"X"
#: How often a worker with limits checks its request count and RSS.
LIMIT_CHECK_INTERVAL_SECONDS = 0.1
#: ... and the shortest interval, when the worker approaches max_requests fast.
LIMIT_CHECK_MIN_SECONDS = 0.002
#: ... and the first interval, before the request rate is known.
LIMIT_CHECK_FIRST_SECONDS = 0.01
#: First fd passed by systemd socket activation (sd_listen_fds(3)).
SD_LISTEN_FDS_START = 3

#: Linux prctl option: signal delivered to us when our parent dies.
_PR_SET_PDEATHSIG = 1

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_RELOAD_SIGNAL = signal.SIGHUP


class ServerStartupError(OSError):
    """The server could not start: address unusable, or a worker failed to start."""


class WorkerApp(Protocol):
    """What the supervisor needs from an app (``hypersonic.Hypersonic`` provides it)."""

    def _serve_worker(self, listen_fd: int) -> None: ...  # pragma: no cover

    def _request_stop(self) -> None: ...  # pragma: no cover


# --------------------------------------------------------------------------- addresses


@dataclass(frozen=True)
class ListenAddress:
    """One resolved address to listen on.

    ``host`` is what the user asked for (kept for messages); ``sockaddr`` is the
    resolved address, with the concrete port.
    """

    host: str
    family: int
    sockaddr: Tuple[Any, ...]

    @property
    def port(self) -> int:
        """The TCP port (0 for a Unix domain socket)."""
        if self.family not in (socket.AF_INET, socket.AF_INET6):
            return 0
        return int(self.sockaddr[1])

    @property
    def url(self) -> str:
        """``http://host:port`` as a client would type it (IPv6 in brackets);
        ``unix:PATH`` for a Unix domain socket."""
        if self.family == getattr(socket, "AF_UNIX", None):
            return f"unix:{self.sockaddr[0]}"
        ip = str(self.sockaddr[0])
        if self.family == socket.AF_INET6:
            return f"http://[{ip}]:{self.port}"
        return f"http://{ip}:{self.port}"

    def with_port(self, port: int) -> "ListenAddress":
        """The same address with another port."""
        return ListenAddress(self.host, self.family, (self.sockaddr[0], port) + tuple(self.sockaddr[2:]))


def _check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    return port


def resolve_listen_address(host: Optional[str], port: int) -> ListenAddress:
    """Resolve ``host`` (IPv4/IPv6 literal or name; ``None``/``""`` = all IPv4
    interfaces, ``"::"`` = dual-stack IPv6) and ``port`` to one address.

    Raises :class:`ServerStartupError` when the host cannot be resolved, and
    :class:`TypeError`/:class:`ValueError` naming the bad argument.
    """
    port = _check_port(port)
    if host is None or host == "":
        host = "0.0.0.0"
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                   socket.IPPROTO_TCP, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServerStartupError(f"cannot listen on host {host!r}: {exc.strerror}") from exc
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            return ListenAddress(host, family, tuple(sockaddr))
    raise ServerStartupError(f"cannot listen on host {host!r}: no IPv4 or IPv6 address")


def _new_socket(address: ListenAddress, reuse_port: bool) -> socket.socket:
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if address.family == socket.AF_INET6 and address.sockaddr[0] in ("::", "::0"):
            # "::" means every interface, IPv4 included, whatever the sysctl default.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address.sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_error(address: ListenAddress, exc: OSError) -> ServerStartupError:
    where = f"{address.host}:{address.port}"
    if exc.errno == errno.EADDRINUSE:
        return ServerStartupError(f"cannot listen on {where}: address already in use")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ServerStartupError(f"cannot listen on {where}: address not available on this machine")
    if exc.errno == errno.EACCES:
        return ServerStartupError(f"cannot listen on {where}: permission denied (ports below 1024 need privileges)")
    return ServerStartupError(f"cannot listen on {where}: {exc.strerror or exc}")


def probe_address(address: ListenAddress) -> ListenAddress:
    """Bind ``address`` once without SO_REUSEPORT and release it.

    Fails with :class:`ServerStartupError` if anyone holds the port; returns the
    address with port 0 replaced by the port the kernel picked.
    """
    try:
        sock = _new_socket(address, reuse_port=False)
    except OSError as exc:
        raise _bind_error(address, exc) from exc
    with sock:
        return address.with_port(sock.getsockname()[1])


def open_listener(address: ListenAddress, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A non-blocking SO_REUSEADDR/SO_REUSEPORT listening socket on ``address``.

    Raises :class:`ServerStartupError` with the reason when it cannot be opened.
    The caller keeps the returned object alive while its fd is in use.
    """
    try:
        sock = _new_socket(address, reuse_port=True)
    except OSError as exc:
        raise _bind_error(address, exc) from exc
    try:
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise _bind_error(address, exc) from exc
    return sock


def _fd_listen_address(sock: socket.socket, label: str) -> ListenAddress:
    name = sock.getsockname()
    if sock.family == getattr(socket, "AF_UNIX", None):
        path = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        return ListenAddress(label, sock.family, (path or "(unnamed)",))
    return ListenAddress(label, sock.family, tuple(name))


def _unix_socket_in_use(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True  # unreachable for another reason (e.g. EACCES, a full backlog): do not touch it
    finally:
        probe.close()
    return True


def open_unix_listener(path: str, mode: Optional[int] = None,
                       backlog: int = LISTEN_BACKLOG) -> Tuple[socket.socket, ListenAddress]:
    """A non-blocking listening Unix domain socket at ``path``.

    A file already at ``path`` is removed only when it is a socket that nothing
    accepts on (a stale one left by a killed server); a regular file, a
    directory or a live socket is a :class:`ServerStartupError`. ``mode``
    (e.g. ``0o660``) is applied with chmod before listen(), so no client can
    connect while the permissions are still the umask's.
    """
    if not isinstance(path, str) or not path:
        raise TypeError(f"uds must be a non-empty str path, not {path!r}")
    if mode is not None and (isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777):
        raise ValueError(f"uds_mode must be a permission int such as 0o660, got {mode!r}")
    if not hasattr(socket, "AF_UNIX"):
        raise ServerStartupError("Unix domain sockets are not available on this platform")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ServerStartupError(f"cannot listen on unix:{path}: {exc.strerror or exc}") from exc
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise ServerStartupError(f"cannot listen on unix:{path}: the path exists and is not a socket")
        if _unix_socket_in_use(path):
            raise ServerStartupError(f"cannot listen on unix:{path}: another server is accepting on it")
        log.info("removing stale socket file %s", path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if mode is not None:
            os.chmod(path, mode)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ServerStartupError(f"cannot listen on unix:{path}: {exc.strerror or exc}") from exc
    return sock, ListenAddress(path, socket.AF_UNIX, (path,))


def remove_unix_socket(path: str, sock_inode: Optional[int]) -> None:
    """Unlink the socket file at ``path`` if it is still the one we created."""
    try:
        st = os.lstat(path)
        if stat.S_ISSOCK(st.st_mode) and (sock_inode is None or st.st_ino == sock_inode):
            os.unlink(path)
    except OSError:
        pass


def inherited_listener(fd: int) -> Tuple[socket.socket, ListenAddress]:
    """Adopt an inherited listening stream socket (``fd=3`` from systemd or a supervisor).

    Raises :class:`ServerStartupError` when ``fd`` is not open, not a socket, not
    a stream socket or not listening; :class:`ValueError` for a bad ``fd``.
    """
    if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
        raise ValueError(f"fd must be a non-negative int, got {fd!r}")
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ServerStartupError(f"cannot use fd {fd}: {exc.strerror or exc} (not an open socket?)") from exc
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) != socket.SOCK_STREAM:
            raise ServerStartupError(f"cannot use fd {fd}: not a stream (TCP or Unix stream) socket")
        if hasattr(socket, "SO_ACCEPTCONN") and not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ServerStartupError(f"cannot use fd {fd}: the socket is not listening (call listen() first)")
        sock.setblocking(False)
        return sock, _fd_listen_address(sock, f"fd {fd}")
    except OSError as exc:
        sock.detach()
        if isinstance(exc, ServerStartupError):
            raise
        raise ServerStartupError(f"cannot use fd {fd}: {exc.strerror or exc}") from exc


def systemd_listen_fd(environ: Optional[Dict[str, str]] = None, *, unset: bool = True) -> Optional[int]:
    """The listening fd passed by systemd socket activation, or None.

    Honours ``LISTEN_PID`` (must be this process) and ``LISTEN_FDS`` (the first
    of them, fd 3, is used; more is logged). With ``unset`` the variables are
    removed from ``os.environ`` so children do not take them for their own.
    """
    env = os.environ if environ is None else environ
    try:
        pid = int(env.get("LISTEN_PID", ""))
        count = int(env.get("LISTEN_FDS", ""))
    except ValueError:
        return None
    if pid != os.getpid() or count < 1:
        return None
    if count > 1:
        log.warning("systemd passed %d sockets; serving on the first (fd %d) only", count, SD_LISTEN_FDS_START)
    if unset and environ is None:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    return SD_LISTEN_FDS_START


@dataclass(frozen=True)
class WorkerLimits:
    """When a worker is recycled: after ``max_requests`` (+ a random 0..jitter,
    drawn per worker, so workers do not all recycle at once) requests, or once
    its resident memory passes ``max_worker_rss`` MiB. 0 disables a limit."""

    max_requests: int = 0
    max_requests_jitter: int = 0
    max_worker_rss: float = 0

    def __post_init__(self) -> None:
        for name in ("max_requests", "max_requests_jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0 (0 = off), got {value!r}")
        rss = self.max_worker_rss
        if isinstance(rss, bool) or not isinstance(rss, (int, float)) or rss < 0:
            raise ValueError(f"max_worker_rss must be a number of MiB >= 0 (0 = off), got {rss!r}")
        if self.max_requests_jitter and not self.max_requests:
            raise ValueError("max_requests_jitter needs max_requests")

    @property
    def active(self) -> bool:
        """True when at least one limit is set."""
        return bool(self.max_requests or self.max_worker_rss)

    def request_limit(self) -> int:
        """This worker's own request limit (0: none), jitter drawn now."""
        if not self.max_requests:
            return 0
        return self.max_requests + random.randint(0, self.max_requests_jitter)


def current_rss_mib() -> Optional[float]:
    """This process's resident set size in MiB (Linux: /proc; elsewhere the peak RSS)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
    except (ImportError, OSError):
        return None


def _start_limit_monitor(app: object, limits: WorkerLimits, status_fd: int) -> None:
    """A daemon thread telling the parent (once) when this worker passed a limit.

    The request counter is polled at an interval adapted to the request rate
    (half the time the remaining requests are expected to take, between
    :data:`LIMIT_CHECK_MIN_SECONDS` and :data:`LIMIT_CHECK_INTERVAL_SECONDS`),
    so a fast worker overshoots ``max_requests`` by little. A native loop instead
    reports ``max_requests`` itself (``on_request_count``), in the wakeup that reaches
    it; the thread then watches only ``max_worker_rss``.
    """
    request_limit = limits.request_limit()
    stats = getattr(app, "stats", None)
    retire_lock = threading.Lock()
    retired = False

    def retire(reason: str) -> None:
        nonlocal retired
        with retire_lock:  # once, whichever limit is passed first
            if retired:
                return
            retired = True
        _write_status(status_fd, _STATUS_RETIRE + reason.encode()[:STATUS_REASON_MAX_BYTES])

    # The native loop fires a callback in the wakeup in which the counter reaches the
    # limit: exact, and immune to this thread being starved of the GIL by a busy loop.
    arm = getattr(getattr(app, "_module", None), "on_request_count", None)
    if request_limit and callable(arm):
        limit = request_limit
        arm(limit, lambda count: retire(f"served {count} requests (max_requests {limit})"))
        request_limit = 0  # nothing left to poll
        if not limits.max_worker_rss:
            return

    def served() -> int:
        try:
            return int(stats()["requests"]) if callable(stats) else 0
        except Exception:  # noqa: BLE001 - loop not running yet or gone
            return 0

    def monitor() -> None:
        interval = LIMIT_CHECK_FIRST_SECONDS  # the rate is not known yet
        last_count, last_time = 0, time.monotonic()
        while True:
            time.sleep(interval)
            reason = ""
            if request_limit:
                count, now = served(), time.monotonic()
                if count >= request_limit:
                    reason = f"served {count} requests (max_requests {request_limit})"
                else:
                    rate = (count - last_count) / max(now - last_time, 1e-6)
                    expected = (request_limit - count) / rate if rate > 0 else LIMIT_CHECK_INTERVAL_SECONDS
                    interval = min(LIMIT_CHECK_INTERVAL_SECONDS, max(LIMIT_CHECK_MIN_SECONDS, expected / 2))
                    last_count, last_time = count, now
            if not reason and limits.max_worker_rss:
                rss = current_rss_mib()
                if rss is not None and rss > limits.max_worker_rss:
                    reason = f"RSS {rss:.1f} MiB > max_worker_rss {limits.max_worker_rss:g} MiB"
            if reason:
                retire(reason)
                return

    threading.Thread(target=monitor, name="hypersonic-limits", daemon=True).start()


# --------------------------------------------------------------------------- app access


def _drain_timeout(app: object) -> float:
    value = getattr(app, "drain_timeout", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return DEFAULT_DRAIN_TIMEOUT


def _ensure_compiled(app: object) -> None:
    compiled = getattr(app, "compiled", None)
    if compiled is None:
        compiled = getattr(app, "_compiled", None)
    if compiled is False:
        app.compile()  # type: ignore[attr-defined]


def _check_workers(workers: object) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be an int, not {type(workers).__name__}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return workers


def startup_message(app: object, address: ListenAddress, workers: int) -> str:
    """The one startup line: URL, workers, event backend, static/dynamic route counts.

    Same wording as ``Hypersonic.run()`` uses for ``workers=1``.
    """
    backend = "?"
    backend_of = getattr(app, "backend", None)
    if callable(backend_of):
        try:
            backend = str(backend_of())
        except (RuntimeError, AttributeError):
            pass
    static = dynamic = 0
    counts = getattr(app, "route_counts", None)
    if callable(counts):
        static, dynamic = counts()
    return (f"hypersonic serving on {address.url} (workers={workers}, backend={backend}, "
            f"routes: {static} static, {dynamic} dynamic)")


# --------------------------------------------------------------------------- worker side


def _set_parent_death_signal(parent_pid: int) -> None:
    """Linux: get SIGTERM when the supervisor dies. Elsewhere: nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            log.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
            return
    except (OSError, AttributeError):  # no libc symbol: stay without it
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _install_stop_handlers(app: WorkerApp) -> Dict[int, Any]:
    """SIGTERM/SIGINT -> ``app._request_stop()``. Returns the previous handlers."""

    def on_stop(signum: int, _frame: Optional[FrameType]) -> None:
        app._request_stop()

    return {int(sig): signal.signal(sig, on_stop) for sig in _STOP_SIGNALS}


def _write_status(fd: int, message: bytes) -> None:
    try:
        os.write(fd, message)
    except OSError:  # the supervisor is gone; nothing to tell
        pass


def _accepted_connections(app: object) -> Optional[int]:
    """Connections this process's loop accepted, from ``app.stats()``; None if unknown."""
    stats = getattr(app, "stats", None)
    if not callable(stats):
        return None
    try:
        value = stats().get("connections")
    except Exception:  # noqa: BLE001 - a broken loop may not report; that is "unknown"
        return None
    return value if isinstance(value, int) else None


def _reason(exc: BaseException) -> bytes:
    text = str(exc) if isinstance(exc, ServerStartupError) else f"{type(exc).__name__}: {exc}"
    return text.encode("utf-8", "replace")[:STATUS_REASON_MAX_BYTES]


def _worker_main(app: WorkerApp, address: ListenAddress, index: int, status_fd: int,
                 parent_pid: int, backlog: int, shared_fd: Optional[int] = None,
                 limits: Optional[WorkerLimits] = None) -> None:
    """Body of a forked worker; never returns (ends with :func:`os._exit`).

    ``shared_fd``: the inherited listener to serve (the slot's or the shared
    one); None opens a listener here. ``limits``: start the recycling monitor.
    """
    code = EXIT_CRASHED
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(_RELOAD_SIGNAL, signal.SIG_IGN)  # the parent's business
        _install_stop_handlers(app)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _BLOCKED_AROUND_FORK)
        _set_parent_death_signal(parent_pid)
        try:
            if shared_fd is not None:
                listen_fd = shared_fd  # this process's inherited copy of the parent's socket
            else:
                listen_fd = open_listener(address, backlog).detach()
        except (ServerStartupError, OSError) as exc:
            _write_status(status_fd, _STATUS_FAILED + _reason(exc))
            code = EXIT_STARTUP_FAILED
            return
        _write_status(status_fd, _STATUS_READY)
        if limits is not None and limits.active:
            _start_limit_monitor(app, limits, status_fd)
        log.debug("worker %d (pid %d) serving on %s", index, os.getpid(), address.url)
        try:
            app._serve_worker(listen_fd)  # the loop owns the fd from here and closes it
        except BaseException as exc:  # noqa: B036 - a worker must end in os._exit whatever happens
            if _accepted_connections(app) == 0:
                _write_status(status_fd, _STATUS_CRASHED_IDLE + _reason(exc))
            raise
        code = EXIT_OK
    except BaseException:  # noqa: B036 - a worker must end in os._exit whatever happens
        log.exception("worker %d (pid %d) crashed", index, os.getpid())
    finally:
        # Only this child's own output is in these buffers: the parent flushed
        # before forking. atexit handlers and finalizers are deliberately skipped.
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


# --------------------------------------------------------------------------- supervisor side

_BLOCKED_AROUND_FORK = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP}


@dataclass
class _WorkerSlot:
    """One of the N worker positions, across its successive processes."""

    index: int
    pid: Optional[int] = None
    status_fd: Optional[int] = None
    started_at: float = 0.0
    ready: bool = False
    failure: str = ""
    crash: str = ""
    young_deaths: int = 0
    restart_at: Optional[float] = None
    status_buffer: bytes = field(default=b"", repr=False)
    retire_reason: str = ""
    #: The slot's previous process, still serving until this one is ready.
    predecessor: Optional[int] = None
    #: The slot's own listener (held by the parent), None with a shared listener.
    listener: Optional[socket.socket] = field(default=None, repr=False)


@dataclass
class _Outgoing:
    """A replaced worker: told to stop (SIGTERM) once its successor was ready."""

    index: int
    pid: int
    kill_at: float


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"ended with wait status {status}"


class _Supervisor:
    """The parent's state machine: spawn, watch, restart, drain."""

    def __init__(self, app: WorkerApp, address: ListenAddress, workers: int, backlog: int,
                 shared_fd: Optional[int] = None, limits: Optional[WorkerLimits] = None,
                 reload: Optional[Callable[[], WorkerApp]] = None) -> None:
        self.app = app
        self.address = address
        self.backlog = backlog
        self.shared_fd = shared_fd
        self.limits = limits
        self.reload = reload
        self.outgoing: List[_Outgoing] = []
        self.reload_requested = False
        #: Slots still to replace for the current SIGHUP, in order.
        self.reload_queue: List[int] = []
        self.slots = [_WorkerSlot(index) for index in range(workers)]
        self.selector = selectors.DefaultSelector()
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_write, False)
        self.selector.register(self.wake_read, selectors.EVENT_READ, None)
        self.stop_signal: Optional[int] = None
        self.force_kill = False
        self.fatal: Optional[str] = None
        self.parent_pid = os.getpid()
        self.started_at = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------

    def run(self) -> None:
        previous_wakeup = -1
        previous_handlers: Dict[int, Any] = {}
        try:
            previous_wakeup = signal.set_wakeup_fd(self.wake_write, warn_on_full_buffer=False)
            for sig in (*_STOP_SIGNALS, signal.SIGCHLD, _RELOAD_SIGNAL):
                previous_handlers[int(sig)] = signal.signal(sig, self._on_signal)
            for slot in self.slots:
                self._spawn(slot)
            self._supervise()
            self._drain()
        finally:
            self._kill_all(signal.SIGKILL)
            self._reap(block=True)
            signal.set_wakeup_fd(previous_wakeup)
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            self._close()
        if self.fatal is not None:
            raise ServerStartupError(self.fatal)

    def _close(self) -> None:
        for slot in self.slots:
            self._close_status(slot)
            if slot.listener is not None:
                slot.listener.close()
                slot.listener = None
        self.selector.close()
        for fd in (self.wake_read, self.wake_write):
            try:
                os.close(fd)
            except OSError:
                pass

    def _on_signal(self, signum: int, _frame: Optional[FrameType]) -> None:
        # Runs in the main thread between bytecodes; the wake-up fd has already
        # woken the selector. Keep it to flag flips.
        if signum in _STOP_SIGNALS:
            if self.stop_signal is not None and signum == signal.SIGINT:
                self.force_kill = True
            if self.stop_signal is None:
                self.stop_signal = signum
        elif signum == _RELOAD_SIGNAL:
            self.reload_requested = True

    # -- spawning --------------------------------------------------------------------

    def _spawn(self, slot: _WorkerSlot) -> None:
        if self.shared_fd is None and slot.listener is None:
            try:
                slot.listener = open_listener(self.address, self.backlog)
            except ServerStartupError as exc:
                if self.fatal is None:
                    self.fatal = str(exc)
                    log.error("worker %d cannot start: %s", slot.index, exc)
                return
        listen_fd = self.shared_fd if slot.listener is None else slot.listener.fileno()
        status_read, status_write = os.pipe()
        for stream in (sys.stdout, sys.stderr):  # nothing buffered may be duplicated
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED_AROUND_FORK)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            os.close(status_read)
            os.close(status_write)
            raise
        if pid == 0:  # child: drop the parent's plumbing, then serve
            try:
                signal.set_wakeup_fd(-1)
                self.selector.close()
                os.close(self.wake_read)
                os.close(self.wake_write)
                os.close(status_read)
                for other in self.slots:
                    if other.status_fd is not None:
                        os.close(other.status_fd)
                    if other is not slot and other.listener is not None:
                        other.listener.close()
            except BaseException:  # noqa: B036
                os._exit(EXIT_CRASHED)
            _worker_main(self.app, self.address, slot.index, status_write, self.parent_pid, self.backlog,
                         listen_fd, self.limits)
            os._exit(EXIT_CRASHED)  # not reached
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(status_write)
        os.set_blocking(status_read, False)
        slot.pid = pid
        slot.status_fd = status_read
        slot.status_buffer = b""
        slot.started_at = time.monotonic()
        slot.ready = False
        slot.failure = ""
        slot.crash = ""
        slot.retire_reason = ""
        slot.restart_at = None
        self.selector.register(status_read, selectors.EVENT_READ, slot)
        log.debug("worker %d started (pid %d)", slot.index, pid)

    # -- the supervision loop --------------------------------------------------------

    def _supervise(self) -> None:
        while self.stop_signal is None and self.fatal is None:
            timeout = IDLE_POLL_SECONDS
            now = time.monotonic()
            for slot in self.slots:
                if slot.restart_at is not None:
                    timeout = min(timeout, max(0.0, slot.restart_at - now))
            for old in self.outgoing:
                timeout = min(timeout, max(0.0, old.kill_at - now))
            self._wait(timeout)
            self._reap(block=False)
            if self.stop_signal is not None or self.fatal is not None:
                break
            now = time.monotonic()
            for slot in self.slots:
                if slot.pid is None and slot.restart_at is not None and slot.restart_at <= now:
                    self._spawn(slot)
            self._kill_overdue(now)
            if self.reload_requested:
                self.reload_requested = False
                self._start_reload()
            self._advance_reload()
            for slot in self.slots:
                if slot.retire_reason and slot.predecessor is None and slot.pid is not None:
                    self._replace(slot, slot.retire_reason)

    # -- recycling and reload -----------------------------------------------------------

    def _replace(self, slot: _WorkerSlot, why: str) -> None:
        """Fork the slot's successor now; its predecessor keeps serving until it is ready."""
        old_pid = slot.pid
        if old_pid is None:
            return
        log.info("worker %d (pid %d) %s: starting its replacement", slot.index, old_pid, why)
        self._close_status(slot)
        slot.pid = None
        slot.predecessor = old_pid
        self._spawn(slot)

    def _on_ready(self, slot: _WorkerSlot) -> None:
        """The slot's new process listens: the predecessor may stop accepting now."""
        old_pid = slot.predecessor
        if old_pid is None:
            return
        slot.predecessor = None
        deadline = time.monotonic() + _drain_timeout(self.app) + EXIT_GRACE_SECONDS
        self.outgoing.append(_Outgoing(slot.index, old_pid, deadline))
        try:
            os.kill(old_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        log.info("worker %d replaced (pid %d -> %s); old worker draining", slot.index, old_pid, slot.pid)

    def _kill_overdue(self, now: float) -> None:
        for old in self.outgoing:
            if old.kill_at <= now:
                log.warning("replaced worker %d (pid %d) still running after the drain; killing it",
                            old.index, old.pid)
                try:
                    os.kill(old.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                old.kill_at = now + IDLE_POLL_SECONDS

    def _start_reload(self) -> None:
        if self.reload is not None:
            try:
                new_app = self.reload()
            except Exception as exc:  # noqa: BLE001 - a broken reload must not take the server down
                log.error("SIGHUP: reloading the app failed, the running workers keep serving: %s: %s",
                          type(exc).__name__, exc)
                return
            self.app = new_app
        log.info("SIGHUP: replacing %d worker(s) one at a time", len(self.slots))
        self.reload_queue = [slot.index for slot in self.slots]

    def _advance_reload(self) -> None:
        """Replace the next queued slot once no replacement is in progress."""
        if not self.reload_queue:
            return
        if self.outgoing or any(slot.predecessor is not None for slot in self.slots):
            return
        slot = self.slots[self.reload_queue[0]]
        if slot.pid is None:
            if slot.restart_at is None:  # dead and not scheduled: nothing to replace
                self.reload_queue.pop(0)
            return
        if not slot.ready:
            return
        self.reload_queue.pop(0)
        self._replace(slot, "reload (SIGHUP)")

    def _wait(self, timeout: float) -> None:
        for key, _mask in self.selector.select(timeout):
            if key.data is None:
                self._drain_wakeup()
            else:
                self._read_status(key.data)

    def _drain_wakeup(self) -> None:
        while True:
            try:
                if not os.read(self.wake_read, PIPE_READ_SIZE):
                    return
            except (BlockingIOError, InterruptedError):
                return

    def _read_status(self, slot: _WorkerSlot) -> None:
        if slot.status_fd is None:
            return
        try:
            data = os.read(slot.status_fd, PIPE_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        if data:
            slot.status_buffer += data
            self._parse_status(slot)
            return
        self._close_status(slot)

    def _parse_status(self, slot: _WorkerSlot) -> None:
        buffer = slot.status_buffer
        if buffer.startswith(_STATUS_READY):
            if not slot.ready:
                slot.ready = True
                log.debug("worker %d ready (pid %s)", slot.index, slot.pid)
                self._on_ready(slot)
            rest = buffer[len(_STATUS_READY):]
            if rest.startswith(_STATUS_RETIRE):
                slot.retire_reason = rest[len(_STATUS_RETIRE):].decode("utf-8", "replace") or "past a limit"
                rest = b""
            if rest.startswith(_STATUS_CRASHED_IDLE):
                slot.crash = rest[len(_STATUS_CRASHED_IDLE):].decode("utf-8", "replace")
        elif buffer.startswith(_STATUS_FAILED):
            slot.failure = buffer[len(_STATUS_FAILED):].decode("utf-8", "replace")

    def _close_status(self, slot: _WorkerSlot) -> None:
        if slot.status_fd is None:
            return
        try:
            self.selector.unregister(slot.status_fd)
        except (KeyError, ValueError):
            pass
        os.close(slot.status_fd)
        slot.status_fd = None

    # -- reaping and restarting ------------------------------------------------------

    def _reap(self, block: bool) -> None:
        """Collect every finished worker; with ``block`` wait for all of them.

        Waits on the workers' own PIDs, never ``-1``: other children of this
        process (the app's subprocesses) are not ours to reap.
        """
        for slot in self.slots:
            pid = slot.pid
            if pid is None:
                continue
            try:
                done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
            except ChildProcessError:  # already reaped elsewhere: its status is lost
                done, status = pid, 0
            if done == pid:
                self._on_worker_exit(slot, status)
        for old in list(self.outgoing) + [_Outgoing(s.index, s.predecessor, 0.0) for s in self.slots
                                          if s.predecessor is not None]:
            try:
                done, status = os.waitpid(old.pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                done, status = old.pid, 0
            if done == old.pid:
                self.outgoing = [o for o in self.outgoing if o.pid != old.pid]
                for s in self.slots:
                    if s.predecessor == old.pid:  # died before its successor was ready
                        s.predecessor = None
                log.debug("replaced worker %d (pid %d) %s", old.index, old.pid, _describe_status(status))

    def _on_worker_exit(self, slot: _WorkerSlot, status: int) -> None:
        pid = slot.pid
        slot.pid = None
        if slot.status_fd is not None:  # pick up a final message written just before exit
            self._read_status(slot)
            self._close_status(slot)
        if self.stop_signal is not None:
            log.debug("worker %d (pid %s) %s", slot.index, pid, _describe_status(status))
            return
        if not slot.ready:
            reason = slot.failure or f"worker {slot.index} {_describe_status(status)} before it was ready"
            if self.fatal is None:
                self.fatal = reason
                log.error("worker %d (pid %s) failed to start: %s", slot.index, pid, reason)
            return
        lifetime = time.monotonic() - slot.started_at
        if slot.crash and time.monotonic() - self.started_at < STARTUP_WINDOW_SECONDS:
            # The app's loop raised right after the server started, before it took a
            # single connection: broken setup, which restarting cannot fix.
            if self.fatal is None:
                self.fatal = f"worker {slot.index} failed on start: {slot.crash}"
                log.error("worker %d (pid %s) %s", slot.index, pid, self.fatal)
            return
        if lifetime < CRASH_LOOP_WINDOW_SECONDS:
            slot.young_deaths += 1
        else:
            slot.young_deaths = 0
        if slot.young_deaths == 0:
            delay = 0.0
        else:
            delay = min(RESTART_BACKOFF_MAX_SECONDS,
                        RESTART_BACKOFF_BASE_SECONDS * (2 ** (slot.young_deaths - 1)))
        slot.restart_at = time.monotonic() + delay
        if delay > 0 and slot.listener is not None:
            # Crash loop: do not park this slot's clients on a socket nobody accepts on.
            slot.listener.close()
            slot.listener = None
        log.warning("worker %d (pid %s) %s after %.1fs; restarting it in %.2fs",
                    slot.index, pid, _describe_status(status), lifetime, delay)

    # -- shutdown --------------------------------------------------------------------

    def _live_pids(self) -> List[int]:
        pids = [slot.pid for slot in self.slots if slot.pid is not None]
        pids += [slot.predecessor for slot in self.slots if slot.predecessor is not None]
        return pids + [old.pid for old in self.outgoing]

    def _kill_all(self, sig: int) -> None:
        for pid in self._live_pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _drain(self) -> None:
        """Stop every worker: SIGTERM, wait for the drain, SIGKILL stragglers."""
        for slot in self.slots:
            slot.restart_at = None
        if self.stop_signal is not None:
            try:
                name = signal.Signals(self.stop_signal).name
            except ValueError:
                name = str(self.stop_signal)
            log.info("received %s; stopping %d worker(s)", name, len(self._live_pids()))
        self._kill_all(signal.SIGTERM)
        if self.stop_signal is None:  # fatal startup error: nothing to drain
            self.stop_signal = int(signal.SIGTERM)
        deadline = time.monotonic() + _drain_timeout(self.app) + EXIT_GRACE_SECONDS
        while self._live_pids() and not self.force_kill:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wait(min(remaining, IDLE_POLL_SECONDS))
            self._reap(block=False)
        stragglers = self._live_pids()
        if stragglers and self.force_kill:
            log.warning("second SIGINT: killing %d worker(s) without waiting for the drain",
                        len(stragglers))
            self._kill_all(signal.SIGKILL)
        elif stragglers:
            log.warning("killing %d worker(s) still running after the drain: %s",
                        len(stragglers), ", ".join(map(str, stragglers)))
            self._kill_all(signal.SIGKILL)
        self._reap(block=True)


# --------------------------------------------------------------------------- entry points


def _open_shared(uds: Optional[str], uds_mode: Optional[int], fd: Optional[int],
                 backlog: int) -> Tuple[Optional[socket.socket], Optional[ListenAddress]]:
    if uds is not None and fd is not None:
        raise ValueError("give uds or fd, not both")
    if uds is not None:
        return open_unix_listener(os.fspath(uds), uds_mode, backlog)
    if uds_mode is not None:
        raise ValueError("uds_mode needs uds")
    if fd is not None:
        return inherited_listener(fd)
    return None, None


def serve(app: WorkerApp, host: Optional[str] = "0.0.0.0", port: int = 8080, workers: int = 1,
          *, backlog: int = LISTEN_BACKLOG,
          on_ready: Optional[Callable[[ListenAddress], None]] = None,
          uds: Optional[str] = None, uds_mode: Optional[int] = None, fd: Optional[int] = None,
          limits: Optional[WorkerLimits] = None,
          reload: Optional[Callable[[], WorkerApp]] = None) -> None:
    """Serve ``app`` from ``workers`` forked processes until SIGTERM/SIGINT.

    The app is compiled first if it is not yet. Returns normally after a
    graceful stop. Raises :class:`ServerStartupError` (before forking when it
    can) if the address cannot be used or a worker fails to start, and
    :class:`TypeError`/:class:`ValueError` naming a bad argument.
    ``on_ready`` is called in the parent with the resolved address just before
    the workers are forked (the CLI logs its startup line there).

    ``uds``/``uds_mode``: serve on a Unix domain socket instead of host:port;
    ``fd``: serve on an inherited listening socket. ``limits``: recycle
    workers (see :class:`WorkerLimits`). ``reload``: called on SIGHUP; returns
    the (compiled) app the replacement workers serve.
    """
    workers = _check_workers(workers)
    if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 1:
        raise ValueError(f"backlog must be a positive int, got {backlog!r}")
    if limits is not None and not isinstance(limits, WorkerLimits):
        raise TypeError(f"limits must be a WorkerLimits, not {type(limits).__name__}")
    if not hasattr(os, "fork"):
        raise ServerStartupError("workers need os.fork(), which this platform lacks")
    shared, address = _open_shared(uds, uds_mode, fd, backlog)
    inode = os.stat(uds).st_ino if uds is not None else None
    try:
        if address is None:
            address = probe_address(resolve_listen_address(host, port))
        _ensure_compiled(app)
        if on_ready is not None:
            on_ready(address)
        log.info("%s", startup_message(app, address, workers))
        log.debug("supervisor pid %d forking %d worker(s) on %s", os.getpid(), workers, address.url)
        _Supervisor(app, address, workers, backlog, None if shared is None else shared.fileno(),
                    limits, reload).run()
    finally:
        if shared is not None:
            shared.close()
        if uds is not None:
            remove_unix_socket(os.fspath(uds), inode)


def serve_in_process(app: WorkerApp, host: Optional[str] = "0.0.0.0", port: int = 8080,
                     *, backlog: int = LISTEN_BACKLOG,
                     on_ready: Optional[Callable[[ListenAddress], None]] = None,
                     uds: Optional[str] = None, uds_mode: Optional[int] = None,
                     fd: Optional[int] = None) -> None:
    """Serve ``app`` in this process (no fork) until SIGTERM/SIGINT, then drain.

    Same address handling, errors and signal contract as :func:`serve`; the
    previous SIGTERM/SIGINT handlers are restored on return.
    """
    listener, address = _open_shared(uds, uds_mode, fd, backlog)
    inode = os.stat(uds).st_ino if uds is not None else None
    try:
        if address is None:
            address = probe_address(resolve_listen_address(host, port))
        _ensure_compiled(app)
        if listener is None:
            listener = open_listener(address, backlog)
        if on_ready is not None:
            on_ready(address)
        log.info("%s", startup_message(app, address, 1))
        previous = _install_stop_handlers(app)
        try:
            app._serve_worker(listener.detach())  # the loop owns the fd from here and closes it
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        if listener is not None:
            listener.close()  # no-op once detached
        if uds is not None:
            remove_unix_socket(os.fspath(uds), inode)
