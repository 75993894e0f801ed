#!/usr/bin/env bash
# bench/profile.sh - where the time goes (issue 4 point 3).
#
# valgrind --tool=callgrind: user-space instructions per request (repeatable on
# a noisy machine) for Hypersonic static (keep-alive and 16-deep pipelined) and
# dynamic routes, with nginx as the reference; perf stat attached during a wrk
# run: task-clock, context switches and syscalls per request by kind. The work
# is done by bench/profile_run.py; this wrapper checks the tools and picks the venv.
# Writes the "Where the time goes" section of bench/RESULTS.md.
#
# Usage: bash bench/profile.sh [--requests 20000] [--perf-duration 5] [--skip-callgrind] [--skip-perf] [--no-write]
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="$BENCH_DIR/.venv/bin/python"
if [ ! -x "$PYTHON" ]; then
    echo "profile.sh: $PYTHON not found: run 'bash bench/setup.sh' first." >&2
    exit 1
fi
for tool in valgrind callgrind_control callgrind_annotate perf wrk taskset; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "profile.sh: '$tool' not found (Debian/Ubuntu: apt-get install valgrind linux-perf wrk util-linux)." >&2
        exit 1
    fi
done
if ! perf stat -e task-clock true >/dev/null 2>&1; then
    echo "profile.sh: 'perf stat' is not permitted here (see /proc/sys/kernel/perf_event_paranoid); use --skip-perf." >&2
fi
exec "$PYTHON" "$BENCH_DIR/profile_run.py" "$@"
