"""Leak check of the server's C under LeakSanitizer (scripts/leak_check.py), short form.

The script runs scripts/leak_app.py with the JIT module built under
ASan+UBSan and LSan enabled, drives every kind of traffic through it (static,
dynamic, POST with Content-Length and chunked bodies, JSON/form, every handler
result type, pipelined, connection-per-request, malformed, aborted and slow
clients, 100-continue), checks each answer, checks that connections and file
descriptors return to idle, and reports leak records whose allocation stack
has a frame in a JIT module. ``--positive-control`` additionally leaks on
purpose from a JIT module and requires both leaks to be found, so "clean"
cannot come from a pipeline that finds nothing.

The long form (thousands of requests per kind) is in docs/RELIABILITY.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "leak_check.py"
#: Requests per kind of traffic in this short form (the script's default is 2000).
PER_KIND = 60
#: Upper bound for the whole run (the first one compiles the C with sanitizers).
RUN_TIMEOUT = 600


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LSan run is set up for Linux")
@pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""),
                    reason="already inside a sanitizer run (tests/sanitize.sh): nested run is redundant")
def test_server_c_has_no_leaks_under_every_kind_of_traffic() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASAN_", "LSAN_", "UBSAN_"))}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--per-kind", str(PER_KIND), "--positive-control"],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env)
    output = proc.stdout + proc.stderr
    if proc.returncode == 2:
        pytest.skip(f"LSan not available here: {output.strip()[-500:]}")
    assert "positive control: found ['leak_malloc', 'leak_reference']" in output, output[-6000:]
    assert proc.returncode == 0, output[-8000:]
    assert "leak_check: clean" in output
