#!/usr/bin/env python3
"""Where the time goes: callgrind instruction counts and perf-stat syscall counts per request.

Issue 4 point 3. Run through bench/profile.sh (which checks valgrind/perf first).

1. ``valgrind --tool=callgrind``: user-space instructions are repeatable on a
   noisy machine, wall time is not. Each case starts a server under callgrind
   (pinned to core 1), waits until it answers, zeroes the counters
   (``callgrind_control -z``), sends an exact number of requests with
   bench/fixed_load.py, dumps (``callgrind_control -d``) and stops it. Reported:
   instructions per request and the top functions by self cost
   (``callgrind_annotate``). Cases: Hypersonic static keep-alive, static
   16-deep pipelined, dynamic (Python handler, ``/user/:id``), and nginx
   (``master_process off``) as the reference.
2. ``perf stat`` attached to the server's processes during a wrk run
   (plaintext, 64 connections): task-clock and context switches per request and
   syscalls per request by kind (tracepoints; this VM exposes no hardware
   counters, so ``instructions`` is "not supported" and callgrind stands in);
   then ``perf record -e cpu-clock`` during a second run: kernel vs user-space
   share of the server's CPU and its top symbols.

Writes its section of bench/RESULTS.md and keeps the raw callgrind files in bench/out/profile/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import run  # noqa: E402

SECTION_BEGIN = "<!-- profile.sh:begin -->"
SECTION_END = "<!-- profile.sh:end -->"
PROFILE_DIR = run.OUT_DIR / "profile"
TOP_FUNCTIONS = 12
STACK_ARTIFACT_SHARE = 0.99
TRACEFS_SYSCALLS = Path("/sys/kernel/tracing/events/syscalls")
SYSCALLS = ("recvfrom", "read", "readv", "recvmsg", "sendto", "sendmsg", "write", "writev", "sendfile64",
            "epoll_wait", "epoll_pwait", "epoll_ctl", "accept4", "close", "setsockopt", "fcntl", "ioctl", "getsockname",
            "clock_gettime", "gettimeofday")
PERF_SCENARIO = run.SCENARIOS[0]  # plaintext-64
PERF_SERVERS = ("nginx", "hypersonic-static", "hypersonic-dynamic")
PERF_RECORD_HZ = 4000
TOP_SYMBOLS = 10


def spec(name: str) -> run.ServerSpec:
    """The server spec called ``name``: run.py's, else features.py's (its app serves app.static)."""
    import features  # writes the static-file docroot under bench/out on import

    for candidate in (*run.SERVERS, *features.SERVERS):
        if candidate.name == name:
            return candidate
    raise ValueError(f"no server named {name!r}")


def _nginx_single_process(port: int, scratch: Path) -> None:
    run._nginx_prepare(port, scratch)
    conf = scratch / "nginx.conf"
    conf.write_text(conf.read_text().replace("master_process on;", "master_process off;"))


def callgrind_spec(base: run.ServerSpec, out_dir: Path) -> run.ServerSpec:
    """``base`` started under callgrind (nginx without its master so one process does the work)."""
    def command(port: int, scratch: Path) -> list[str]:
        return ["valgrind", "--tool=callgrind", "--quiet", f"--callgrind-out-file={out_dir}/{base.name}.%p.out",
                *base.command(port, scratch)]
    prepare = _nginx_single_process if base.name == "nginx" else base.prepare
    env = dict(base.env)
    # Debug info (same -O2 code) so callgrind_annotate can point at source lines of the JIT module.
    env["HYPERSONIC_JIT_CFLAGS"] = (os.environ.get("HYPERSONIC_JIT_CFLAGS", "") + " -g").strip()
    env["HYPERSONIC_CACHE_DIR"] = str(run.OUT_DIR / "hypersonic_cache_debuginfo")
    return run.ServerSpec(base.name, base.description, command, base.version, env=env, prepare=prepare)


def annotate(path: Path) -> tuple[int, list[tuple[int, str]]]:
    """(total Ir, [(self Ir, function)...]) from callgrind_annotate, biggest first."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", str(path)], capture_output=True, text=True,
                          check=True).stdout
    total = 0
    functions: list[tuple[int, str]] = []
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+)\s+(?:\([\d.]+%\)\s+)?(.*)$", line)
        if not match:
            continue
        value = int(match.group(1).replace(",", ""))
        what = match.group(2).strip()
        if what.startswith("=>"):
            continue  # a call line of annotated source, not a function's own cost
        if what.startswith("PROGRAM TOTALS"):
            total = value
        elif total and what and value < total * STACK_ARTIFACT_SHARE:
            # Functions already on the stack when the counters were zeroed show about the whole
            # total as self cost (a callgrind_annotate artifact of zeroing mid-call): skip them.
            functions.append((value, _short_function(what)))
    # With debug info, code inlined from several files shows as one entry per file: merge by name.
    merged: dict[str, int] = {}
    objects: dict[str, str] = {}
    for value, label in functions:
        name, _, obj = label.partition(" (")
        merged[name] = merged.get(name, 0) + value
        if obj:
            objects[name] = obj.rstrip(")")
    functions = sorted(((value, f"{name} ({objects[name]})" if name in objects else name)
                        for name, value in merged.items()), reverse=True)
    return total, functions


def _short_function(what: str) -> str:
    """'file:function [object]' -> 'function (object basename)'."""
    obj = ""
    match = re.match(r"(.*?)\s+\[(.*)\]$", what)
    if match:
        what, obj = match.group(1), os.path.basename(match.group(2))
        if obj.startswith("_hs_"):
            obj = "hypersonic JIT module"
    function = what.rsplit(":", 1)[-1]
    return f"{function} ({obj})" if obj else function


#: (group, test on "function (object)") in order; the first match wins.
GROUPS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("HTTP parser (hs_parse_request)", lambda f: f.startswith("hs_parse_request")),
    ("GIL release/acquire around the wait", lambda f: any(k in f for k in (
        "take_gil", "drop_gil", "pthread_mutex", "pthread_cond", "PyEval_SaveThread", "PyEval_RestoreThread",
        "CheckSignals"))),
    ("rest of Hypersonic's C (loop, router, responses, buffers)",
     lambda f: "hypersonic JIT module" in f or f.startswith("hs_")),
    ("Python interpreter (handler, Request, objects)", lambda f: "libpython" in f or f.startswith("_Py") or
     f.startswith("Py")),
    ("libc (memcpy, malloc, syscall wrappers)", lambda f: "libc.so" in f),
)


def grouped(functions: list[tuple[int, str]]) -> dict[str, int]:
    """Self cost summed per GROUPS entry ("other" for the rest)."""
    totals: dict[str, int] = {}
    for value, function in functions:
        group = next((name for name, test in GROUPS if test(function)), "other")
        totals[group] = totals.get(group, 0) + value
    return totals


def callgrind_case(name: str, server_name: str, path: str, requests: int, connections: int, depth: int,
                   scratch: Path) -> dict:
    """Profile one case; return its figures."""
    out_dir = PROFILE_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    server = run.start_server(callgrind_spec(spec(server_name), out_dir), scratch / slug)
    pid = server.process.pid
    try:
        subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=True, timeout=120)
        load = subprocess.run([sys.executable, str(BENCH_DIR / "fixed_load.py"), str(server.port), path,
                               str(requests), "--connections", str(connections), "--depth", str(depth)],
                              capture_output=True, text=True, timeout=900)
        if load.returncode != 0:
            raise RuntimeError(f"fixed_load failed: {load.stdout}{load.stderr}")
        subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True, timeout=120)
    finally:
        run.stop_server(server)
    dumps = sorted(out_dir.glob(f"{server_name}.{pid}.out.*"))
    if not dumps:
        raise RuntimeError(f"no callgrind dump for {name} in {out_dir}")
    total, functions = annotate(dumps[-1])
    return {"case": name, "server": server_name, "path": path, "requests": requests, "connections": connections,
            "depth": depth, "total_ir": total, "ir_per_request": total / requests,
            "top": functions[:TOP_FUNCTIONS], "groups": grouped(functions),
            "dump": str(dumps[-1].relative_to(run.REPO_DIR))}


def perf_stat_server(server_spec: run.ServerSpec, scenario: run.Scenario, duration: float, scratch: Path,
                     out_file: Path) -> dict:
    """Start ``server_spec``, warm it up, and count events with perf stat during one wrk run.

    Returns {"requests", "counts", "per_request"}: task-clock (ms), context switches, all
    syscalls and syscalls by kind (the SYSCALLS whose tracepoints exist here).
    """
    events = ["task-clock", "context-switches", "raw_syscalls:sys_enter"]
    events += [f"syscalls:sys_enter_{name}" for name in SYSCALLS if (TRACEFS_SYSCALLS / f"sys_enter_{name}").exists()]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    server = run.start_server(server_spec, scratch)
    try:
        run.run_wrk(server.port, scenario, 1.0)  # warm-up
        pids = ",".join(str(pid) for pid in server.tree())
        perf = subprocess.Popen(["perf", "stat", "-x", ",", "-o", str(out_file), "-e", ",".join(events),
                                 "-p", pids], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            run.time.sleep(0.5)
            figures = run.run_wrk(server.port, scenario, duration)
            run.time.sleep(run.SETTLE_AFTER_RUN_S)
        finally:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=30)
    finally:
        run.stop_server(server)
    counts: dict[str, float] = {}
    for line in out_file.read_text().splitlines():
        fields = line.split(",")
        if len(fields) < 3 or line.startswith("#"):
            continue
        try:
            counts[fields[2]] = float(fields[0])
        except ValueError:
            counts[fields[2]] = float("nan")  # "<not supported>" / "<not counted>"
    requests = max(figures["requests"], 1)
    return {"requests": figures["requests"], "counts": counts,
            "per_request": {event: value / requests for event, value in counts.items()}}


def perf_case(server_name: str, duration: float, scratch: Path) -> dict:
    """perf stat on one run.py server during a plaintext-64 wrk run, then perf record."""
    figures = perf_stat_server(spec(server_name), PERF_SCENARIO, duration, scratch / f"perf-{server_name}",
                               PROFILE_DIR / f"perf-{server_name}.csv")
    figures["server"] = server_name
    figures["samples"] = perf_record_case(server_name, duration, scratch)
    return figures


def perf_table(cases: list[dict]) -> list[str]:
    """Markdown rows: one per event, one column per case (case["server"] names it)."""
    events = list(dict.fromkeys(e for case in cases for e in case["counts"]))
    out = ["| event | " + " | ".join(case["server"] for case in cases) + " |",
           "| --- | " + " | ".join("---:" for _ in cases) + " |"]
    for event in events:
        cells = []
        for case in cases:
            value = case["per_request"].get(event)
            if value is None or value != value:
                cells.append("n/a")
            elif event == "task-clock":
                cells.append(f"{value * 1000:.2f} us")  # perf reports msec
            else:
                cells.append(f"{value:.3f}")
        shown = event.replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "all syscalls")
        if all(c in ("n/a", "0.000") for c in cells):
            continue
        out.append(f"| {shown} | " + " | ".join(cells) + " |")
    return out


def perf_record_case(server_name: str, duration: float, scratch: Path) -> dict:
    """Sample the server (software cpu-clock, works without hardware counters) during a wrk run.

    Returns the share of samples in the kernel vs user space and the top symbols.
    """
    server = run.start_server(spec(server_name), scratch / f"record-{server_name}")
    data = PROFILE_DIR / f"perf-{server_name}.data"
    try:
        run.run_wrk(server.port, PERF_SCENARIO, 1.0)  # warm-up
        pids = ",".join(str(pid) for pid in server.tree())
        record = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(PERF_RECORD_HZ),
                                   "-o", str(data), "-p", pids], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            run.time.sleep(0.5)
            run.run_wrk(server.port, PERF_SCENARIO, duration)
        finally:
            record.send_signal(signal.SIGINT)
            record.wait(timeout=60)
    finally:
        run.stop_server(server)
    report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "sym", "--stdio"],
                            capture_output=True, text=True, check=False, timeout=300).stdout
    kernel = user = 0.0
    top: list[tuple[float, str]] = []
    for line in report.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+\[(k|\.)\]\s+(.*)$", line)
        if not match:
            continue
        share, where, symbol = float(match.group(1)), match.group(2), match.group(3).strip()
        if where == "k":
            kernel += share
        else:
            user += share
        if len(top) < TOP_SYMBOLS:
            top.append((share, f"{'kernel' if where == 'k' else 'user'}: {symbol}"))
    return {"kernel": kernel, "user": user, "top": top}


def render(callgrind: list[dict], perf: list[dict], machine: dict[str, str], note: str) -> str:
    """The markdown written between the profile.sh markers of RESULTS.md."""
    now = dt.datetime.now(dt.timezone.utc)
    out = [SECTION_BEGIN, "", f"## Where the time goes (profile.sh run of {now:%Y-%m-%d %H:%M} UTC)", "",
           f"- Machine: {machine['cpu']}, {machine['cores']} cores; load before: `{machine['load']}`",
           f"- Command: `{' '.join(['bash bench/profile.sh', *sys.argv[1:]])}`", ""]
    if note:
        out += [f"> {note}", ""]
    if callgrind:
        out += ["### User-space instructions per request (callgrind)", "",
                "Counters zeroed once the server answers, then an exact number of requests "
                "(bench/fixed_load.py), then dumped: startup and compilation are excluded. Kernel work "
                "(the syscalls themselves) is not counted by callgrind: see perf stat below.", "",
                "| case | requests | connections x depth | instructions / request |",
                "| --- | ---: | ---: | ---: |"]
        for case in callgrind:
            out.append(f"| {case['case']} | {case['requests']:,} | {case['connections']} x {case['depth']} "
                       f"| {case['ir_per_request']:,.0f} |")
        group_names = [name for name, _ in GROUPS] + ["other"]
        out += ["", "Instructions per request by where they are spent:", "",
                "| case | " + " | ".join(group_names) + " |",
                "| --- | " + " | ".join("---:" for _ in group_names) + " |"]
        for case in callgrind:
            out.append(f"| {case['case']} | " + " | ".join(
                f"{case['groups'].get(name, 0) / case['requests']:,.0f}" for name in group_names) + " |")
        for case in callgrind:
            out += ["", f"Top functions by self cost, **{case['case']}** (`{case['dump']}`):", "",
                    "| share | instr / request | function |", "| ---: | ---: | --- |"]
            for value, function in case["top"]:
                out.append(f"| {100 * value / max(case['total_ir'], 1):.1f}% | {value / case['requests']:,.0f} "
                           f"| `{function}` |")
    if perf:
        out += ["", f"### perf stat per request ({PERF_SCENARIO.description}, wrk on core {run.CLIENT_CORE})", "",
                *perf_table(perf)]
        out += ["", "Where the server's CPU goes (`perf record -e cpu-clock`, samples of the server's processes "
                "during a second wrk run of the same scenario):", "",
                "| | " + " | ".join(case["server"] for case in perf) + " |",
                "| --- | " + " | ".join("---:" for _ in perf) + " |",
                "| kernel | " + " | ".join(f"{case['samples']['kernel']:.1f}%" for case in perf) + " |",
                "| user space | " + " | ".join(f"{case['samples']['user']:.1f}%" for case in perf) + " |"]
        for case in perf:
            out += ["", f"Top symbols, {case['server']}: " + "; ".join(
                f"{share:.1f}% `{symbol}`" for share, symbol in case["samples"]["top"])]
        out.append("")
        out.append("perf has no hardware counters in this VM (`perf stat -e instructions true` says "
                   "`<not supported>`): instruction counts come from callgrind above.")
    out += ["", SECTION_END]
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    """Run the profiles; write the report section."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per callgrind case (20000)")
    parser.add_argument("--perf-duration", type=float, default=5.0, help="seconds of wrk under perf stat (5)")
    parser.add_argument("--skip-callgrind", action="store_true")
    parser.add_argument("--skip-perf", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.perf_duration <= 0:
        parser.error("--requests and --perf-duration must be positive")
    run.check_environment()
    os.sched_setaffinity(0, {run.CLIENT_CORE})
    machine = run.machine_description()
    started = dt.datetime.now(dt.timezone.utc)
    scratch = run.OUT_DIR / f"profile-{started:%Y%m%d-%H%M%S}"
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    callgrind: list[dict] = []
    perf: list[dict] = []
    notes = []
    if not args.skip_callgrind:
        for old in PROFILE_DIR.glob("*.out*"):
            old.unlink()
        cases = [("hypersonic static, keep-alive", "hypersonic-static", "/plaintext", 16, 1),
                 ("hypersonic static, 16-deep pipelining", "hypersonic-static", "/plaintext", 16, 16),
                 ("hypersonic dynamic /user/:id, keep-alive", "hypersonic-dynamic", f"/user/{run.USER_ID}", 16, 1),
                 ("hypersonic dynamic /plaintext, keep-alive", "hypersonic-dynamic", "/plaintext", 16, 1),
                 ("hypersonic app.static 4 KiB file (baked, answered from C), keep-alive", "hypersonic",
                  "/static/page.html", 16, 1),
                 ("nginx, keep-alive (reference)", "nginx", "/plaintext", 16, 1)]
        for name, server_name, path, connections, depth in cases:
            run.log(f"callgrind: {name}")
            try:
                callgrind.append(callgrind_case(name, server_name, path, args.requests, connections, depth,
                                                scratch))
                run.log(f"  {callgrind[-1]['ir_per_request']:,.0f} instructions/request")
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                notes.append(f"callgrind {name}: {exc}")
                run.log(f"  failed: {exc}")
    if not args.skip_perf:
        for server_name in PERF_SERVERS:
            run.log(f"perf stat: {server_name}")
            try:
                perf.append(perf_case(server_name, args.perf_duration, scratch))
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                notes.append(f"perf {server_name}: {exc}")
                run.log(f"  failed: {exc}")
    section = render(callgrind, perf, machine, "; ".join(notes))
    print(section)
    if not args.no_write:
        run.replace_section(run.RESULTS_MD, SECTION_BEGIN, SECTION_END, section)
        run.log(f"wrote {run.RESULTS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
