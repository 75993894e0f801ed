#!/usr/bin/env bash
# bench/setup.sh - prepare everything bench/run.py and bench/socket_ops.py need.
#
# Checks the OS tools (wrk, nginx, taskset; valgrind/perf are optional and only
# used by profile.sh), then creates bench/.venv - a virtualenv kept apart from
# the project's own - with the pinned peers from bench/requirements.txt and
# Hypersonic itself (editable, from this checkout).
#
# Usage: bash bench/setup.sh            (PYTHON=python3.12 bash bench/setup.sh to pick one)
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
PYTHON="${PYTHON:-python3}"

missing=0
for tool in wrk nginx taskset; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "setup.sh: '$tool' not found on PATH." >&2
        missing=1
    fi
done
if [ "$missing" -ne 0 ]; then
    echo "Install the OS packages first, e.g. Debian/Ubuntu: sudo apt-get install wrk nginx util-linux" >&2
    echo "(macOS: brew install wrk nginx; taskset does not exist there - run.py needs Linux)" >&2
    exit 1
fi
for tool in valgrind perf; do
    command -v "$tool" >/dev/null 2>&1 || echo "setup.sh: note: '$tool' not found; bench/profile.sh needs it (apt-get install valgrind linux-perf)." >&2
done

if [ ! -x "$BENCH_DIR/.venv/bin/python" ]; then
    "$PYTHON" -m venv "$BENCH_DIR/.venv"
fi
"$BENCH_DIR/.venv/bin/python" -m pip install --quiet --upgrade pip
"$BENCH_DIR/.venv/bin/python" -m pip install --quiet -r "$BENCH_DIR/requirements.txt"
"$BENCH_DIR/.venv/bin/python" -m pip install --quiet -e "$REPO_DIR"

# socketify ships prebuilt native libraries that do not load everywhere: say so, do not fail.
if ! "$BENCH_DIR/.venv/bin/python" -c "import socketify" >/dev/null 2>&1; then
    echo "setup.sh: warning: socketify does not import here; run.py will skip it and say why." >&2
fi
echo "setup.sh: ready. Run: bench/.venv/bin/python bench/run.py   (or --quick)"
