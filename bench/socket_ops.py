#!/usr/bin/env python3
"""Calls per second of each hypersonic.socket operation against its standard-library equivalent.

Issue 2 point 7 (a benchmark, not a test). Two parts, both in one invocation:

1. Micro-benchmarks in this process: each hypersonic.socket call and the
   standard-library code that does the same job, timed with ``timeit`` (best
   of several repeats, loop overhead included in both), e.g. ``platform()`` vs
   a ``sys.platform`` lookup, ``ev_poll`` with one ready fd vs
   ``select.epoll.poll``, creating and closing a listening socket vs the
   ``socket`` module.
2. The seed's SYNOPSIS loop served with hypersonic.socket vs the same loop on
   ``socket`` + ``select.epoll`` (bench/apps/synopsis_loops.py), under wrk with
   one connection per request (``Connection: close``); server on core 1, wrk
   on core 0; rounds alternate between the two; medians.

Targets (issue 2): platform()/event_backend() 7M+ calls/s; ev_poll at least as
fast as select.epoll.poll with one ready fd; the SYNOPSIS loop >= 1.3x the
stdlib loop's requests/s.

Usage: bench/.venv/bin/python bench/socket_ops.py [--rounds 5] [--duration 4] [--no-write]
Writes its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import select
import shutil
import socket
import sys
import timeit
from pathlib import Path
from typing import Callable, Optional, Union

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
os.environ.setdefault("HYPERSONIC_CACHE_DIR", str(BENCH_DIR / "out" / "hypersonic_cache"))
if os.environ.get("HYPERSONIC_JIT", "").strip() == "0":
    sys.exit("socket_ops.py measures the native hypersonic.socket: unset HYPERSONIC_JIT=0")

import run  # noqa: E402  (the harness: server start/stop, wrk, /proc CPU)
from hypersonic import socket as hs  # noqa: E402

SECTION_BEGIN = "<!-- socket_ops.py:begin -->"
SECTION_END = "<!-- socket_ops.py:end -->"
REPEATS = 7
TARGET_SECONDS = 0.2  # per timeit repeat
ACCEPT_BATCH = 200  # pending connections accepted per timed batch
SEND_DRAIN_EVERY = 64
REQUEST = b"GET /hello?name=x HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
HELLO = b"Hello"
RESPONSE_404 = (b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n"
                b"Connection: keep-alive\r\n\r\nNot Found")
SYNOPSIS_SCENARIO = run.Scenario("synopsis-close", "GET /, Connection: close, 32 connections", "/", 32,
                                 headers=(("Connection", "close"),), connection_close=True,
                                 expected_body=HELLO)


def _timer(subject: Union[str, Callable[[], object]], namespace: dict) -> timeit.Timer:
    if isinstance(subject, str):
        return timeit.Timer(subject, globals=namespace)
    return timeit.Timer(subject)


def compare(subject: Union[str, Callable[[], object]], reference: Union[str, Callable[[], object]],
            namespace: Optional[dict] = None, number: Optional[int] = None) -> tuple[float, float]:
    """Calls/s of ``subject`` and of ``reference`` (statements or callables), best of REPEATS each.

    The repeats alternate between the two so a burst of background load hits both alike.
    """
    namespace = namespace or {}
    timers = (_timer(subject, namespace), _timer(reference, namespace))
    if number is None:
        count, elapsed = timers[0].autorange()
        number = max(1, int(count * TARGET_SECONDS / max(elapsed, 1e-9)))
    best = [float("inf"), float("inf")]
    for _ in range(REPEATS):
        for index, timer in enumerate(timers):
            best[index] = min(best[index], timer.timeit(number))
    return number / best[0], number / best[1]


def row(name: str, std_name: str, rates: tuple[float, float]) -> tuple[str, float, str, float]:
    """One result line: (hypersonic op, its calls/s, stdlib equivalent, its calls/s)."""
    return name, rates[0], std_name, rates[1]


def tcp_pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    """(listener, client, server side) of a loopback TCP connection, server side non-blocking."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    server.setblocking(False)
    for sock in (client, server):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener, client, server


def drain(sock: socket.socket) -> None:
    """Read whatever is waiting on ``sock`` without blocking."""
    sock.setblocking(False)
    try:
        while sock.recv(1 << 20):
            pass
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)


def micro_benchmarks() -> list[tuple[str, float, str, float]]:
    """(hypersonic op, calls/s, stdlib equivalent, calls/s) for each operation."""
    results: list[tuple[str, float, str, float]] = []
    ns = {"platform": hs.platform, "event_backend": hs.event_backend, "sys": sys, "select": select}
    results.append(row("platform()", "sys.platform", compare("platform()", "sys.platform", ns)))
    results.append(row("event_backend()", "select.epoll (attribute lookup)",
                       compare("event_backend()", "select.epoll", ns)))

    # ev_poll with one ready fd: a socketpair end with unread bytes stays readable (level-triggered).
    ready, writer = socket.socketpair()
    writer.send(b"x")
    loop_fd = hs.create_event_loop(ready.fileno())
    epoll = select.epoll()
    epoll.register(ready.fileno(), select.EPOLLIN)
    assert hs.ev_poll(loop_fd, 0) == [(ready.fileno(), hs.EV_READ)], hs.ev_poll(loop_fd, 0)
    assert len(epoll.poll(0)) == 1
    ns.update(ev_poll=hs.ev_poll, loop_fd=loop_fd, epoll=epoll)
    results.append(row("ev_poll(loop, 0), 1 ready fd", "epoll.poll(0), 1 ready fd",
                       compare("ev_poll(loop_fd, 0)", "epoll.poll(0)", ns)))

    # event_add + event_del vs register + unregister of one fd.
    other, other_peer = socket.socketpair()
    fd = other.fileno()
    event_add, event_del = hs.event_add, hs.event_del

    def hs_add_del() -> None:
        event_add(loop_fd, fd)
        event_del(loop_fd, fd)

    def std_add_del() -> None:
        epoll.register(fd, select.EPOLLIN)
        epoll.unregister(fd)

    results.append(row("event_add + event_del", "epoll.register + unregister", compare(hs_add_del, std_add_del)))
    hs.close_fd(loop_fd)
    epoll.close()
    for sock in (ready, writer, other, other_peer):
        sock.close()

    # create + close a listening socket (127.0.0.1, ephemeral port, same options).
    create_listen_socket, close_fd = hs.create_listen_socket, hs.close_fd

    def hs_listen_close() -> None:
        close_fd(create_listen_socket(0, "127.0.0.1"))

    def std_listen_close() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        sock.listen(socket.SOMAXCONN)
        sock.close()

    results.append(row("create_listen_socket + close_fd", "socket() + setsockopt x2 + bind + listen + close",
                       compare(hs_listen_close, std_listen_close, number=2000)))

    results.append(accept_benchmark())
    results.extend(request_response_benchmarks())
    return results


def accept_benchmark() -> tuple[str, float, str, float]:
    """Accept + close of already-pending connections: http_accept/close_fd vs accept()/close()."""
    listen_fd = hs.create_listen_socket(0, "127.0.0.1")
    probe = socket.socket(fileno=os.dup(listen_fd))
    address = probe.getsockname()
    probe.close()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(socket.SOMAXCONN)
    listener.setblocking(False)

    def timed(accept_one: Callable[[], None], target: tuple) -> float:
        clients = [socket.create_connection(target) for _ in range(ACCEPT_BATCH)]
        start = timeit.default_timer()
        for _ in range(ACCEPT_BATCH):
            accept_one()
        elapsed = timeit.default_timer() - start
        for client in clients:
            client.close()
        return elapsed

    http_accept, close_fd = hs.http_accept, hs.close_fd

    def hs_accept() -> None:
        fd = http_accept(listen_fd)
        if fd < 0:
            raise RuntimeError("http_accept found no pending connection")
        close_fd(fd)

    def std_accept() -> None:
        conn, _ = listener.accept()
        conn.setblocking(False)
        conn.close()

    best_hs = best_std = float("inf")
    for _ in range(REPEATS):  # alternating, as in compare()
        best_hs = min(best_hs, timed(hs_accept, address))
        best_std = min(best_std, timed(std_accept, listener.getsockname()))
    result = ("http_accept + close_fd (pending connection)", ACCEPT_BATCH / best_hs,
              "accept() + setblocking(False) + close()", ACCEPT_BATCH / best_std)
    hs.close_fd(listen_fd)
    listener.close()
    return result


def request_response_benchmarks() -> list[tuple[str, float, str, float]]:
    """http_recv / http_send / http_send_404 vs recv+parse / send over a loopback TCP connection."""
    results = []
    listener, client, server = tcp_pair()
    fd = server.fileno()
    http_recv, http_send, http_send_404 = hs.http_recv, hs.http_send, hs.http_send_404

    def hs_recv() -> None:
        client.send(REQUEST)
        if http_recv(fd) is None:
            raise RuntimeError("http_recv returned None for a complete request")

    def std_recv() -> None:
        client.send(REQUEST)
        data = server.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        request_line, _, headers = head.partition(b"\r\n")
        method, path, version = request_line.split(b" ", 2)
        keep_alive = b"connection: close" not in headers.lower()
        [method.decode(), path.decode(), body, int(keep_alive), fd]

    results.append(row("client send + http_recv (parse, list)", "client send + recv + split/parse",
                       compare(hs_recv, std_recv)))

    counter = [0]

    def hs_send() -> None:
        http_send(fd, HELLO, "text/plain")
        counter[0] += 1
        if counter[0] % SEND_DRAIN_EVERY == 0:
            drain(client)

    def std_send() -> None:
        server.send(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n%s"
                    % (b"text/plain", len(HELLO), HELLO))
        counter[0] += 1
        if counter[0] % SEND_DRAIN_EVERY == 0:
            drain(client)

    results.append(row("http_send(fd, 'Hello')", "format response + send()", compare(hs_send, std_send)))

    def hs_404() -> None:
        http_send_404(fd)
        counter[0] += 1
        if counter[0] % SEND_DRAIN_EVERY == 0:
            drain(client)

    def std_404() -> None:
        server.send(RESPONSE_404)
        counter[0] += 1
        if counter[0] % SEND_DRAIN_EVERY == 0:
            drain(client)

    results.append(row("http_send_404(fd)", "send(precomputed 404)", compare(hs_404, std_404)))
    drain(client)
    hs.close_fd(server.detach())  # close_fd also drops hypersonic's per-fd read buffer
    for sock in (client, listener):
        sock.close()
    return results


def synopsis_specs() -> list[run.ServerSpec]:
    """The two SYNOPSIS loops as run.py server specs."""
    return [
        run.ServerSpec(f"synopsis-{impl}", f"SYNOPSIS loop on {impl}",
                       (lambda impl: lambda port, scratch: [sys.executable, str(BENCH_DIR / "apps" / "synopsis_loops.py"),
                                                            impl, str(port)])(impl),
                       lambda: "")
        for impl in ("hypersonic", "stdlib")
    ]


def synopsis_benchmark(args: argparse.Namespace, scratch_root: Path) -> dict[str, run.CellResult]:
    """Both SYNOPSIS loops under wrk, one connection per request, rounds alternating."""
    return {cell.server: cell for cell in run.run_scenario(SYNOPSIS_SCENARIO, synopsis_specs(), args, scratch_root)}


def synopsis_syscalls(args: argparse.Namespace, scratch_root: Path) -> list[dict]:
    """perf stat of each SYNOPSIS loop during one more wrk run: syscalls per request (empty without perf)."""
    if not shutil.which("perf"):
        return []
    import profile_run  # noqa: PLC0415  (only needed here; imports run)

    cases = []
    for server_spec in synopsis_specs():
        try:
            figures = profile_run.perf_stat_server(server_spec, SYNOPSIS_SCENARIO, args.duration,
                                                   scratch_root / f"perf-{server_spec.name}",
                                                   scratch_root / f"perf-{server_spec.name}.csv")
        except (RuntimeError, OSError, run.subprocess.SubprocessError) as exc:
            run.log(f"perf stat {server_spec.name}: {exc}")
            return []
        figures["server"] = server_spec.name
        cases.append(figures)
    return cases


def render(micro: list[tuple[str, float, str, float]], loops: dict[str, run.CellResult], syscalls: list[dict],
           args: argparse.Namespace, machine: dict[str, str], load_after: str) -> str:
    """The markdown written between the socket_ops.py markers of RESULTS.md."""
    now = dt.datetime.now(dt.timezone.utc)
    out = [SECTION_BEGIN, "", f"## hypersonic.socket operations (run of {now:%Y-%m-%d %H:%M} UTC)", "",
           f"- Machine: {machine['cpu']}, {machine['cores']} cores; Python {machine['python']}; "
           f"event backend {hs.event_backend()}",
           f"- Load before: `{machine['load']}`; after: `{load_after}`",
           f"- Command: `bench/.venv/bin/python bench/socket_ops.py {' '.join(sys.argv[1:])}`",
           f"- Method: calls/s are the best of {REPEATS} `timeit` repeats in one process, alternating between the two "
           "sides (loop overhead included on both); the harness is pinned to core 0. Send benchmarks drain the peer every 64 calls; the "
           "recv benchmarks include the client's send of the request on both sides.", "",
           "| operation (hypersonic.socket) | calls/s | standard-library equivalent | calls/s | ratio |",
           "| --- | ---: | --- | ---: | ---: |"]
    for name, hs_rate, std_name, std_rate in micro:
        out.append(f"| `{name}` | {hs_rate:,.0f} | `{std_name}` | {std_rate:,.0f} | {hs_rate / std_rate:.2f}x |")
    out += ["", f"SYNOPSIS loop (bench/apps/synopsis_loops.py), wrk -t1 -c{SYNOPSIS_SCENARIO.connections} "
            f"with `Connection: close` (one connection per request), server on core {run.SERVER_CORE}, wrk on "
            f"core {run.CLIENT_CORE}, {args.rounds} round(s) of {args.duration:g}s alternating, medians:", "",
            "| loop | req/s | p99 ms | server CPU us/req | socket errors |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, cell in loops.items():
        if cell.rounds:
            out.append(f"| {name} | {cell.median('rps'):,.0f} | {cell.median('p99_ms'):.2f} "
                       f"| {cell.median('cpu_us_per_request'):.2f} | {cell.error_summary()} |")
        else:
            out.append(f"| {name} | {cell.failure} | | | |")
    if syscalls:
        import profile_run  # noqa: PLC0415

        out += ["", "Per request in the SYNOPSIS loops (`perf stat` attached during one more wrk run):", "",
                *profile_run.perf_table(syscalls)]
    rates = {name: rate for name, rate, _, _ in micro}
    std_rates = {name: rate for name, _, _, rate in micro}
    hs_loop, std_loop = loops.get("synopsis-hypersonic"), loops.get("synopsis-stdlib")
    out += ["", "| target (issue 2) | measured | goal | met |", "| --- | ---: | ---: | :---: |"]
    for op in ("platform()", "event_backend()"):
        value = rates[op]
        out.append(f"| `{op}` calls/s | {value / 1e6:.1f}M | >= 7M | {'yes' if value >= 7e6 else '**no**'} |")
    key = "ev_poll(loop, 0), 1 ready fd"
    ratio = rates[key] / std_rates[key]
    out.append(f"| `ev_poll` / `select.epoll.poll`, 1 ready fd | {ratio:.2f}x | >= 1.0x | "
               f"{'yes' if ratio >= 1.0 else '**no**'} |")
    if hs_loop and std_loop and hs_loop.rounds and std_loop.rounds:
        ratio = hs_loop.median("rps") / std_loop.median("rps")
        cpu_ratio = std_loop.median("cpu_us_per_request") / hs_loop.median("cpu_us_per_request")
        out.append(f"| SYNOPSIS loop req/s, hypersonic / stdlib | {ratio:.2f}x | >= 1.3x | "
                   f"{'yes' if ratio >= 1.3 else '**no**'} |")
        out.append(f"| SYNOPSIS loop server CPU/req, stdlib / hypersonic (req/s at equal CPU) | {cpu_ratio:.2f}x "
                   f"| (>= 1.3x) | {'yes' if cpu_ratio >= 1.3 else '**no**'} |")
    out += ["", SECTION_END]
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    """Run both parts and write the report section."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="wrk rounds per SYNOPSIS loop (5)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per wrk round (4)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of wrk warm-up (1)")
    parser.add_argument("--quick", action="store_true", help="1 round of 2s (provisional)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 2.0
    if args.rounds < 1 or args.duration <= 0 or args.warmup <= 0:
        parser.error("--rounds must be >= 1 and --duration/--warmup positive")
    run.check_environment()
    os.sched_setaffinity(0, {run.CLIENT_CORE})
    machine = run.machine_description()
    run.log("micro-benchmarks")
    micro = micro_benchmarks()
    for name, hs_rate, std_name, std_rate in micro:
        run.log(f"{name}: {hs_rate:,.0f}/s   vs {std_name}: {std_rate:,.0f}/s   ({hs_rate / std_rate:.2f}x)")
    run.log("SYNOPSIS loops under wrk")
    started = dt.datetime.now(dt.timezone.utc)
    scratch_root = BENCH_DIR / "out" / f"socket-ops-{started:%Y%m%d-%H%M%S}"
    loops = synopsis_benchmark(args, scratch_root)
    run.log("SYNOPSIS loops under perf stat")
    syscalls = synopsis_syscalls(args, scratch_root)
    load_after = run.subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    section = render(micro, loops, syscalls, args, machine, load_after)
    print(section)
    if not args.no_write:
        run.replace_section(run.RESULTS_MD, SECTION_BEGIN, SECTION_END, section)
        run.log(f"wrote {run.RESULTS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
