"""The soak script in its CI size: ``scripts/soak.py --seconds 20`` must pass.

Twenty seconds of the same mixed traffic as the 10-minute soak (keep-alive,
16-deep pipelined, connection-per-request, POST with Content-Length and
chunked bodies, wrk when installed) beside slowloris connections and garbage
senders, against a 2-worker server: zero errors for the well-behaved clients,
no worker replaced, the server answering afterwards and exiting 0 on SIGTERM.

RSS: the first ten seconds are warm-up (the allocator and the per-connection
buffers reach their working size), and the limit over the last ten is looser
than the long run's 5% (``SHORT_RSS_GROWTH_LIMIT``): a short run cannot tell a
slow settle from a leak; the 10-minute run in docs/RELIABILITY.md holds the
real figure. A leak per request still fails it: at the ~10-20k requests/s seen
here, 100 bytes leaked per request is over 10 MiB in ten seconds, a third of
the workers' RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOAK = REPO / "scripts" / "soak.py"

#: Seconds of traffic, of warm-up within them, and the bound on the whole run
#: (server start with a possible JIT compile, the run, generator grace, shutdown).
SHORT_SECONDS = 20
SHORT_WARMUP = 10
RUN_LIMIT_SECONDS = 300
#: Percent the workers' RSS may grow over the measured part of the short run.
SHORT_RSS_GROWTH_LIMIT = 15.0
#: Under tests/sanitize.sh the RSS is ASan's (its quarantine of freed memory grows
#: by design): reported, not bounded.
SANITIZED = os.environ.get("HYPERSONIC_SANITIZED") == "1"
UNBOUNDED_RSS_LIMIT = 1e9


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the soak reads /proc (Linux only)")
def test_short_soak_of_mixed_and_hostile_traffic_has_no_errors(tmp_path: Path) -> None:
    report_path = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, str(SOAK), "--seconds", str(SHORT_SECONDS), "--warmup", str(SHORT_WARMUP),
         "--rss-growth-limit", str(UNBOUNDED_RSS_LIMIT if SANITIZED else SHORT_RSS_GROWTH_LIMIT), "--log-dir", str(tmp_path), "--json", str(report_path)],
        check=False, capture_output=True, text=True, timeout=RUN_LIMIT_SECONDS, cwd=REPO,
    )
    server_log = (tmp_path / "soak-server.log")
    detail = proc.stdout + proc.stderr + (server_log.read_text(errors="replace")[-3000:] if server_log.exists() else "")
    assert proc.returncode == 0, detail
    report = json.loads(report_path.read_text())
    assert report["ok"] and not report["failures"], detail
    classes = report["classes"]
    for name in ("keepalive", "pipelined", "per_request", "post"):
        assert classes[name]["errors"] == 0 and classes[name]["requests"] > 0, (name, detail)
    # The hostile clients really ran and were answered as expected.
    assert classes["slowloris"]["outcomes"].get("408", 0) > 0, detail
    assert any(k.startswith("malformed: 4") for k in classes["garbage"]["outcomes"]), detail
    assert report["exit_code"] == 0 and not report["pid_changes"], detail
