"""Pre-fork workers and their supervisor: ``app.run(workers=N)`` lands here.

Theory of operation
-------------------
The parent process never serves HTTP. It

1. resolves ``host``/``port`` once and probe-binds the address *without*
   SO_REUSEPORT, so a port already taken (by anyone, including another
   Hypersonic) or an unknown host raises :class:`ServerStartupError` before any
   process is forked (port 0 is resolved here to one concrete free port that
   every worker then shares);
2. forks ``workers`` children. Each child opens its own non-blocking
   SO_REUSEPORT listener on that address (the kernel spreads connections over
   them), reports ``ready`` (or the reason it could not bind) over a pipe, and
   runs ``app._serve_worker(listen_fd)`` until a stop is requested. Children end
   with :func:`os._exit`, so they never run the parent's ``atexit`` handlers;
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
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

__all__ = [
    "ListenAddress",
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

#: Linux prctl option: signal delivered to us when our parent dies.
_PR_SET_PDEATHSIG = 1

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
        """The TCP port."""
        return int(self.sockaddr[1])

    @property
    def url(self) -> str:
        """``http://host:port`` as a client would type it (IPv6 in brackets)."""
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
                 parent_pid: int, backlog: int) -> None:
    """Body of a forked worker; never returns (ends with :func:`os._exit`)."""
    code = EXIT_CRASHED
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _install_stop_handlers(app)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _BLOCKED_AROUND_FORK)
        _set_parent_death_signal(parent_pid)
        try:
            listener = open_listener(address, backlog)
        except ServerStartupError as exc:
            _write_status(status_fd, _STATUS_FAILED + _reason(exc))
            code = EXIT_STARTUP_FAILED
            return
        _write_status(status_fd, _STATUS_READY)
        log.debug("worker %d (pid %d) serving on %s", index, os.getpid(), address.url)
        try:
            app._serve_worker(listener.detach())  # the loop owns the fd from here and closes it
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

_BLOCKED_AROUND_FORK = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


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

    def __init__(self, app: WorkerApp, address: ListenAddress, workers: int, backlog: int) -> None:
        self.app = app
        self.address = address
        self.backlog = backlog
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
            for sig in (*_STOP_SIGNALS, signal.SIGCHLD):
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

    # -- spawning --------------------------------------------------------------------

    def _spawn(self, slot: _WorkerSlot) -> None:
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
            except BaseException:  # noqa: B036
                os._exit(EXIT_CRASHED)
            _worker_main(self.app, self.address, slot.index, status_write, self.parent_pid, self.backlog)
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
            self._wait(timeout)
            self._reap(block=False)
            if self.stop_signal is not None or self.fatal is not None:
                break
            now = time.monotonic()
            for slot in self.slots:
                if slot.pid is None and slot.restart_at is not None and slot.restart_at <= now:
                    self._spawn(slot)

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
            rest = buffer[len(_STATUS_READY):]
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
        log.warning("worker %d (pid %s) %s after %.1fs; restarting it in %.2fs",
                    slot.index, pid, _describe_status(status), lifetime, delay)

    # -- shutdown --------------------------------------------------------------------

    def _live_pids(self) -> List[int]:
        return [slot.pid for slot in self.slots if slot.pid is not None]

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


def serve(app: WorkerApp, host: Optional[str] = "0.0.0.0", port: int = 8080, workers: int = 1,
          *, backlog: int = LISTEN_BACKLOG,
          on_ready: Optional[Callable[[ListenAddress], None]] = None) -> None:
    """Serve ``app`` from ``workers`` forked processes until SIGTERM/SIGINT.

    The app is compiled first if it is not yet. Returns normally after a
    graceful stop. Raises :class:`ServerStartupError` (before forking when it
    can) if the address cannot be used or a worker fails to start, and
    :class:`TypeError`/:class:`ValueError` naming a bad argument.
    ``on_ready`` is called in the parent with the resolved address just before
    the workers are forked (the CLI logs its startup line there).
    """
    workers = _check_workers(workers)
    if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 1:
        raise ValueError(f"backlog must be a positive int, got {backlog!r}")
    if not hasattr(os, "fork"):
        raise ServerStartupError("workers need os.fork(), which this platform lacks")
    address = probe_address(resolve_listen_address(host, port))
    _ensure_compiled(app)
    if on_ready is not None:
        on_ready(address)
    log.info("%s", startup_message(app, address, workers))
    log.debug("supervisor pid %d forking %d worker(s) on %s", os.getpid(), workers, address.url)
    _Supervisor(app, address, workers, backlog).run()


def serve_in_process(app: WorkerApp, host: Optional[str] = "0.0.0.0", port: int = 8080,
                     *, backlog: int = LISTEN_BACKLOG,
                     on_ready: Optional[Callable[[ListenAddress], None]] = None) -> None:
    """Serve ``app`` in this process (no fork) until SIGTERM/SIGINT, then drain.

    Same address handling, errors and signal contract as :func:`serve`; the
    previous SIGTERM/SIGINT handlers are restored on return.
    """
    address = probe_address(resolve_listen_address(host, port))
    _ensure_compiled(app)
    listener = open_listener(address, backlog)
    try:
        if on_ready is not None:
            on_ready(address)
        log.info("%s", startup_message(app, address, 1))
    except BaseException:
        listener.close()
        raise
    previous = _install_stop_handlers(app)
    try:
        app._serve_worker(listener.detach())  # the loop owns the fd from here and closes it
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


