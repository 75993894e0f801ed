#!/usr/bin/env python3
"""Benchmark the production features: static files against nginx, and what
middleware and compression cost on a dynamic route.

Same method as bench/run.py (whose machinery this imports): the server alone on
core 1, one wrk thread on core 0, every answer checked before measuring, a
warm-up, then rounds run round-robin across the servers of a scenario, medians
reported; server CPU microseconds per request from /proc is the figure that
separates servers when one wrk thread is the bottleneck.

Scenarios and servers:

* ``file-4k``, ``file-gzip-32k`` (``Accept-Encoding: gzip``, a pre-compressed
  ``.gz`` sibling present), ``file-1m`` (16 connections): nginx with its
  defaults for files (sendfile on, gzip_static on, no open_file_cache), nginx
  with ``open_file_cache`` (it then skips open/fstat per request), and
  Hypersonic's ``app.static``;
* ``hooks``: a dynamic JSON route on Hypersonic without hooks and with
  ``request_id()`` + ``cors()`` + an authentication before-hook;
* ``gzip-8k``: a dynamic route returning about 8 KiB of JSON to a client that
  accepts gzip, on Hypersonic without and with ``compress()``.

Usage::

    bash bench/setup.sh                          # once
    bench/.venv/bin/python bench/features.py     # about 5 minutes
    bench/.venv/bin/python bench/features.py --quick --scenario file-4k

Writes its section of bench/RESULTS.md (between ``<!-- features.py:begin -->``
and ``<!-- features.py:end -->``) and the raw figures in bench/out/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional

import run as bench
from run import CellResult, Scenario, ServerSpec

SECTION_BEGIN = "<!-- features.py:begin -->"
SECTION_END = "<!-- features.py:end -->"
DOCROOT = bench.OUT_DIR / "features_docroot"
NGINX_TEMPLATE = bench.APPS_DIR / "nginx_files.conf.template"
APP = bench.APPS_DIR / "hypersonic_features.py"
TOKEN = "Bearer bench"


def make_docroot() -> dict[str, bytes]:
    """Write the files both servers serve; return name -> identity bytes."""
    DOCROOT.mkdir(parents=True, exist_ok=True)
    line = b"<p>Hypersonic serves this page from memory; nginx reads it from disk.</p>\n"
    page = (b"<!doctype html><html><body>\n" + line * 60)[:4096 - 15] + b"</body></html>\n"
    script = b"".join(b"function f%d(a, b) { return a * %d + b; }\n" % (i, i) for i in range(900))[:32768]
    big = bytes(range(256)) * 4096
    files = {"page.html": page, "app.js": script, "big.bin": big}
    for name, data in files.items():
        path = DOCROOT / name
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
    gz = DOCROOT / "app.js.gz"
    compressed = gzip.compress(script, compresslevel=9, mtime=0)
    if not gz.exists() or gz.read_bytes() != compressed:
        gz.write_bytes(compressed)
    # nginx's gzip_static and Hypersonic both want the sibling no older than the file
    os.utime(gz, (os.stat(DOCROOT / "app.js").st_mtime + 1,) * 2)
    return files


FILES = make_docroot()
EXPECTED = {
    "/static/page.html": (FILES["page.html"], "text/html"),
    "/static/app.js": (FILES["app.js"], ""),  # nginx: application/javascript; Python 3.12: text/javascript (RFC 9239)
    "/static/big.bin": (FILES["big.bin"], "application/octet-stream"),
}

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("file-4k", "GET a 4 KiB HTML file, 64 keep-alive connections", "/static/page.html", 64),
    Scenario("file-gzip-32k", "GET a 32 KiB JavaScript file with Accept-Encoding: gzip (a .gz sibling exists), "
             "64 connections", "/static/app.js", 64, headers=(("Accept-Encoding", "gzip"),)),
    Scenario("file-1m", "GET a 1 MiB file, 16 connections", "/static/big.bin", 16),
    Scenario("hooks", "GET /api (dynamic, small JSON) with Authorization and Origin headers, 64 connections",
             "/api", 64, headers=(("Authorization", TOKEN), ("Origin", "https://app.example.com"))),
    Scenario("gzip-8k", "GET /report (dynamic, 8 KiB JSON) with Accept-Encoding: gzip, 64 connections",
             "/report", 64, headers=(("Accept-Encoding", "gzip"),)),
)


def _nginx_prepare(open_file_cache: bool) -> Callable[[int, Path], None]:
    def prepare(port: int, scratch: Path) -> None:
        scratch.mkdir(parents=True, exist_ok=True)
        cache = ("open_file_cache max=1000 inactive=60s; open_file_cache_valid 60s;"
                 if open_file_cache else "")
        conf = (NGINX_TEMPLATE.read_text().replace("@PORT@", str(port)).replace("@DIR@", str(scratch))
                .replace("@DOCROOT@", str(DOCROOT)).replace("@OPEN_FILE_CACHE@", cache))
        (scratch / "nginx.conf").write_text(conf)
    return prepare


def _hypersonic(mode: str) -> Callable[[int, Path], list[str]]:
    return lambda port, scratch: [bench._python(), str(APP), mode, str(port), str(DOCROOT)]


FILE_SCENARIOS = ("file-4k", "file-gzip-32k", "file-1m")
SERVERS: tuple[ServerSpec, ...] = (
    ServerSpec("nginx", "nginx, 1 worker, sendfile + gzip_static, no open_file_cache "
               "(apps/nginx_files.conf.template)",
               lambda port, scratch: ["nginx", "-p", str(scratch), "-c", str(scratch / "nginx.conf")],
               bench._nginx_version, skip_scenarios=("hooks", "gzip-8k"), prepare=_nginx_prepare(False),
               unavailable=bench._tool_missing("nginx")),
    ServerSpec("nginx-cached", "the same nginx with open_file_cache (no open/fstat per request)",
               lambda port, scratch: ["nginx", "-p", str(scratch), "-c", str(scratch / "nginx.conf")],
               bench._nginx_version, skip_scenarios=("hooks", "gzip-8k"), prepare=_nginx_prepare(True),
               unavailable=bench._tool_missing("nginx")),
    ServerSpec("hypersonic", "Hypersonic, app.static + dynamic routes, no hooks, no compression, 1 worker",
               _hypersonic("plain"), bench._hypersonic_version, env={"HYPERSONIC_JIT": "1"},
               unavailable=bench._import_error("hypersonic.app")),
    ServerSpec("hypersonic-hooks", "Hypersonic with request_id() + cors() + an auth before-hook, 1 worker",
               _hypersonic("hooks"), bench._hypersonic_version, skip_scenarios=FILE_SCENARIOS + ("gzip-8k",),
               env={"HYPERSONIC_JIT": "1"}, unavailable=bench._import_error("hypersonic.app")),
    ServerSpec("hypersonic-gzip", "Hypersonic with compress() (level 6), 1 worker",
               _hypersonic("gzip"), bench._hypersonic_version, skip_scenarios=FILE_SCENARIOS + ("hooks",),
               env={"HYPERSONIC_JIT": "1"}, unavailable=bench._import_error("hypersonic.app")),
)


def check(server: bench.RunningServer, scenario: Scenario) -> str:
    """Raise ValueError unless the answer is right; return its Content-Encoding ('' for identity)."""
    (status, headers, body), = bench.http_exchange(server.port, scenario, 1)
    if status != 200:
        raise ValueError(f"status {status}: {body[:80]!r}")
    if headers.get("content-length") != str(len(body)):
        raise ValueError(f"Content-Length {headers.get('content-length')!r} for {len(body)} bytes")
    encoding = headers.get("content-encoding", "")
    if encoding == "gzip":
        body = gzip.decompress(body)
    elif encoding:
        raise ValueError(f"unexpected Content-Encoding {encoding!r}")
    if scenario.path in EXPECTED:
        expected, ctype = EXPECTED[scenario.path]
        if body != expected:
            raise ValueError(f"body differs from the file ({len(body)} bytes)")
        if not headers.get("content-type", "").startswith(ctype):
            raise ValueError(f"Content-Type {headers.get('content-type')!r}, expected {ctype}")
    elif scenario.path == "/api":
        if json.loads(body) != {"message": "Hello, World!"}:
            raise ValueError(f"unexpected body {body[:80]!r}")
    elif scenario.path == "/report":
        if len(json.loads(body)["rows"]) != 120:
            raise ValueError("unexpected report")
    return encoding


def run_scenario(scenario: Scenario, specs: list[ServerSpec], args: argparse.Namespace,
                 scratch_root: Path) -> tuple[list[CellResult], dict[str, str]]:
    """bench/run.py's start-check-warm-measure, with this file's check; also the encodings seen."""
    encodings: dict[str, str] = {}

    def check_and_note(server: bench.RunningServer, scen: Scenario) -> None:
        encodings[server.spec.name] = check(server, scen)

    cells = bench.run_scenario(scenario, specs, args, scratch_root, check=check_and_note)
    return [c for c in cells if c.failure != "n/a"], encodings


def render(results: list[tuple[Scenario, list[CellResult], dict[str, str]]], specs: list[ServerSpec],
           args: argparse.Namespace, started: dt.datetime) -> str:
    """The markdown section for RESULTS.md."""
    machine = bench.machine_description()
    lines = [
        SECTION_BEGIN,
        "## Production features (bench/features.py)",
        "",
        f"Command: `bench/.venv/bin/python bench/features.py{' ' + ' '.join(args.argv) if args.argv else ''}`, "
        f"started {started:%Y-%m-%d %H:%M} UTC; {args.rounds} rounds of {args.duration:g} s after a "
        f"{args.warmup:g} s warm-up, medians. Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} "
        f"cores, load before: {machine.get('load', '?')}. Server on core 1, one wrk thread on core 0.",
        "",
        "Servers: " + "; ".join(f"**{s.name}**: {s.description} ({s.version()})" for s in specs) + ".",
        "",
        "| scenario | server | encoding | requests/s | server CPU µs/req | vs first row | p99 ms | errors |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario, cells, encodings in results:
        reference: Optional[float] = None
        for cell in cells:
            if cell.failure or not cell.rounds:
                lines.append(f"| {scenario.name} | {cell.server} | | {cell.failure or 'no rounds'} | | | | |")
                continue
            cpu = cell.median("cpu_us_per_request")
            if reference is None:
                reference = cpu
            lines.append(
                f"| {scenario.name} | {cell.server} | {encodings.get(cell.server) or 'identity'} | "
                f"{cell.median('rps'):,.0f} | {cpu:.2f} | {cpu / reference:.2f}x | "
                f"{cell.median('p99_ms'):.2f} | {cell.error_summary()} |")
    lines += ["", "Scenarios: " + "; ".join(f"**{s.name}**: {s.description}" for s, _, _ in results) + ".",
              "", SECTION_END]
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measured round")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s (a smoke run)")
    parser.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 2, 1.0, 1.0
    return args


def main(argv: Optional[list[str]] = None) -> int:
    """Run the scenarios; print and record the table."""
    args = parse_args(argv)
    bench.check_environment()
    started = dt.datetime.now(dt.timezone.utc)
    scenarios = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    specs = []
    for spec in SERVERS:
        reason = spec.unavailable() if spec.unavailable else None
        if reason:
            bench.log(f"skipping {spec.name}: {reason}")
        else:
            specs.append(spec)
    results = []
    with tempfile.TemporaryDirectory(prefix="hs-features-") as scratch:
        for scenario in scenarios:
            cells, encodings = run_scenario(scenario, specs, args, Path(scratch))
            results.append((scenario, cells, encodings))
    section = render(results, specs, args, started)
    print(section)
    bench.OUT_DIR.mkdir(exist_ok=True)
    (bench.OUT_DIR / "features.json").write_text(json.dumps(
        [{"scenario": s.name, "cells": [c.as_dict() for c in cells]} for s, cells, _ in results], indent=1))
    if not args.no_write:
        bench.replace_section(bench.RESULTS_MD, SECTION_BEGIN, SECTION_END, section)
    failures = [c for _, cells, _ in results for c in cells if c.failure]
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
