#!/usr/bin/env python3
"""What the access log costs: server CPU per request with the log off and on (issue 7.1).

Same method and measuring code as bench/run.py (imported from it): the server
alone on core 1, one wrk thread on core 0, static plaintext over 64 keep-alive
connections, rounds run round-robin across the variants, medians reported.
Server CPU microseconds per request = (utime + stime of the server process
tree from /proc) / requests wrk completed.

Variants (the bench app's static routes, one worker):
  log-off      no access log (the default)
  log-common   common log format, appended to a file in bench/out/
  log-custom   "$remote_addr $request $status $bytes_sent $request_time_us $request_id"
               (reads the clock per request for the duration)

With ``--callgrind N`` each variant also runs under ``valgrind --tool=callgrind``
(bench/profile_run.py's setup): counters zeroed after startup, N requests sent
with bench/fixed_load.py (16 keep-alive connections), dumped. User-space
instructions per request are exact and repeatable on a busy machine, where the
CPU-time figures are not (the kernel's share, the write(2) of the log, is not
in them: one write per ~400 lines).

Usage::

    bench/.venv/bin/python bench/access_log_cost.py             # 3 rounds of 3 s
    bench/.venv/bin/python bench/access_log_cost.py --rounds 5 --callgrind 20000

Writes the block between ``<!-- access-log:begin -->`` and ``<!-- access-log:end -->``
of bench/RESULTS.md (appended when absent) and the raw rounds to bench/out/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # bench/run.py: the measuring functions (after the path insert above)

SECTION_BEGIN = "<!-- access-log:begin -->"
SECTION_END = "<!-- access-log:end -->"
SCENARIO_NAME = "plaintext-64"
CUSTOM_FORMAT = "$remote_addr $request $status $bytes_sent $request_time_us $request_id"
LOG_DIR = bench.OUT_DIR / "access_log_cost"

# The bench app's static routes with the access log options given on the command line.
_SERVER_SCRIPT = """
import sys
from hypersonic import Hypersonic
HELLO = "Hello, World!"
port, path, fmt = int(sys.argv[1]), sys.argv[2], sys.argv[3]
app = Hypersonic(access_log=None if path == "off" else path, access_log_format=fmt)
app.get("/plaintext", lambda: HELLO)
app.get("/json", lambda: {"message": HELLO})
app.post("/upload", lambda: "1024")
app.get("/user/:id", lambda req: req.param("id"))
app.compile()
app.run(port=port, host="127.0.0.1", workers=1)
"""


def _spec(name: str, description: str, log_path: Optional[Path], fmt: str) -> "bench.ServerSpec":
    def command(port: int, scratch: Path) -> list[str]:
        return [bench._python(), "-c", _SERVER_SCRIPT, str(port), str(log_path) if log_path else "off", fmt]

    return bench.ServerSpec(name, description, command, bench._hypersonic_version, env={"HYPERSONIC_JIT": "1"})


def specs() -> list["bench.ServerSpec"]:
    """The three variants."""
    return [
        _spec("log-off", "no access log (default)", None, "common"),
        _spec("log-common", "common log format to a file", LOG_DIR / "common.log", "common"),
        _spec("log-custom", f"'{CUSTOM_FORMAT}' to a file", LOG_DIR / "custom.log", CUSTOM_FORMAT),
    ]


def callgrind_ir_per_request(spec: "bench.ServerSpec", requests: int, scratch: Path) -> float:
    """User-space instructions per request of ``spec`` under callgrind (startup excluded)."""
    import profile_run  # bench/profile_run.py: callgrind setup and callgrind_annotate parsing

    out_dir = LOG_DIR / "callgrind"
    out_dir.mkdir(parents=True, exist_ok=True)
    server = bench.start_server(profile_run.callgrind_spec(spec, out_dir), scratch / f"callgrind-{spec.name}")
    pid = server.process.pid
    try:
        subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=True, timeout=120)
        load = subprocess.run([sys.executable, str(bench.BENCH_DIR / "fixed_load.py"), str(server.port),
                               "/plaintext", str(requests), "--connections", "16"],
                              capture_output=True, text=True, timeout=900, check=False)
        if load.returncode != 0:
            raise RuntimeError(f"fixed_load failed: {load.stdout}{load.stderr}")
        subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True, timeout=120)
    finally:
        bench.stop_server(server)
    dumps = sorted(out_dir.glob(f"{spec.name}.{pid}.out.*"))
    if not dumps:
        raise RuntimeError(f"no callgrind dump for {spec.name} in {out_dir}")
    total, _ = profile_run.annotate(dumps[-1])
    return total / requests


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def render(cells: list["bench.CellResult"], args: argparse.Namespace, started: dt.datetime,
           load_before: str, load_after: str, log_bytes: dict[str, float],
           instructions: Optional[dict[str, float]] = None) -> str:
    """The RESULTS.md block."""
    off = next((c for c in cells if c.server == "log-off" and c.rounds), None)
    base = off.median("cpu_us_per_request") if off else None
    lines = [
        SECTION_BEGIN,
        "## Access log cost",
        "",
        f"Measured {started:%Y-%m-%d %H:%M} UTC with `bench/.venv/bin/python bench/access_log_cost.py "
        f"--rounds {args.rounds} --duration {args.duration:g}"
        + (f" --callgrind {args.callgrind}" if args.callgrind else "") + "` (static plaintext, 64 keep-alive connections, "
        "server on core 1, one wrk thread on core 0; medians over the rounds, run round-robin; the "
        "measuring code is bench/run.py's).",
        f"Load before: `{load_before}`; after: `{load_after}`. The machine is shared, so compare the "
        "variants with each other (same rounds, interleaved), not with other sections.",
        "",
        "| variant | server CPU µs/request (median) | rounds min–max | vs off | requests/s | p99 ms | bytes/line |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for cell in cells:
        if cell.failure or not cell.rounds:
            lines.append(f"| {cell.server} | {cell.failure or 'no rounds'} | | | | | |")
            continue
        cpu = cell.median("cpu_us_per_request")
        delta = "" if base is None or cell.server == "log-off" else f"{cpu - base:+.2f} µs ({(cpu / base - 1) * 100:+.0f}%)"
        per_line = f"{log_bytes[cell.server]:.0f}" if log_bytes.get(cell.server) else "-"
        spread = [r.cpu_us_per_request for r in cell.rounds]
        lines.append(f"| {cell.server} | {cpu:.2f} | {min(spread):.2f}–{max(spread):.2f} | {delta} | {cell.median('rps'):,.0f} | "
                     f"{cell.median('p99_ms'):.2f} | {per_line} |")
    if instructions:
        ir_base = instructions.get("log-off")
        lines += ["", f"User-space instructions per request under callgrind ({args.callgrind} requests on 16 "
                      "keep-alive connections after startup, `--callgrind` option; exact, unlike the CPU times "
                      "above on a shared machine):", "",
                  "| variant | instructions/request | vs off |", "| --- | ---: | ---: |"]
        for name, ir in instructions.items():
            delta = "" if name == "log-off" or not ir_base else f"{ir - ir_base:+,.0f} ({(ir / ir_base - 1) * 100:+.1f}%)"
            lines.append(f"| {name} | {ir:,.0f} | {delta} |")
    lines += [
        "",
        "log-common: `$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent`; "
        f"log-custom: `{CUSTOM_FORMAT}` (one clock read per request for the duration). Lines are "
        "formatted in C into a 64 KiB per-worker buffer and written with one write(2) per 32 KiB (plus "
        "one a second); with the log off the request path pays one test of a NULL pointer. When the "
        "difference to log-off is inside the rounds' min–max range, the machine's noise is larger than "
        "the log's cost.",
        SECTION_END,
    ]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """Measure the variants and write the RESULTS.md block."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per variant (3)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measured round (3)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per variant (2)")
    parser.add_argument("--callgrind", type=int, default=0, metavar="N",
                        help="also count instructions per request under callgrind over N requests (0: skip)")
    parser.add_argument("--no-write", action="store_true", help="print the block; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.warmup <= 0:
        parser.error("--rounds, --duration and --warmup must be positive")
    bench.check_environment()
    os.sched_setaffinity(0, {bench.CLIENT_CORE})
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for old in LOG_DIR.glob("*.log"):
        old.unlink()
    started = dt.datetime.now(dt.timezone.utc)
    load_before = _uptime()
    scenario = next(s for s in bench.SCENARIOS if s.name == SCENARIO_NAME)
    cells = bench.run_scenario(scenario, specs(), args, LOG_DIR / "scratch")
    instructions: dict[str, float] = {}
    for spec in specs() if args.callgrind > 0 else []:
        instructions[spec.name] = callgrind_ir_per_request(spec, args.callgrind, LOG_DIR / "scratch")
        print(f"callgrind {spec.name}: {instructions[spec.name]:,.0f} instructions/request", flush=True)
    load_after = _uptime()
    log_bytes = {"log-common": _bytes_per_line(LOG_DIR / "common.log"),
                 "log-custom": _bytes_per_line(LOG_DIR / "custom.log")}
    (bench.OUT_DIR / "access_log_cost.json").write_text(
        json.dumps({"started": started.isoformat(), "cells": [c.as_dict() for c in cells],
                    "log_bytes": log_bytes, "instructions_per_request": instructions}, indent=1))
    section = render(cells, args, started, load_before, load_after, log_bytes, instructions)
    print(section)
    if not args.no_write:
        bench.replace_section(bench.RESULTS_MD, SECTION_BEGIN, SECTION_END, section)
    return 0 if all(c.rounds and not c.failure for c in cells) else 1


def _bytes_per_line(path: Path) -> float:
    """Average line length of a log file (0 when missing or empty)."""
    try:
        size, lines = path.stat().st_size, 0
        with open(path, "rb") as log_file:
            for block in iter(lambda: log_file.read(1 << 20), b""):
                lines += block.count(b"\n")
    except OSError:
        return 0.0
    return size / lines if lines else 0.0


if __name__ == "__main__":
    raise SystemExit(main())
