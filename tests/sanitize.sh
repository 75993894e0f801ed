#!/usr/bin/env bash
# tests/sanitize.sh - run pytest with every JIT-compiled C module built under ASan+UBSan.
#
# Usage:  tests/sanitize.sh [pytest args...]      (no args: the whole suite, tests/)
#
# What it does:
#   * HYPERSONIC_JIT_CFLAGS gets the sanitizer flags (they are part of the JIT cache key, so
#     sanitized and plain builds never mix), and HYPERSONIC_CACHE_DIR points at a separate cache;
#   * the compiler's ASan runtime is LD_PRELOADed into Python (it must come first; CPython
#     itself is not instrumented), UBSan's runtime comes in as a dependency of the modules
#     (gcc) or is part of the ASan runtime (clang, built with -shared-libasan);
#   * PYTHONMALLOC=malloc so Python objects' buffers are ASan-tracked too;
#   * HYPERSONIC_SANITIZED=1 tells tests they run sanitized (several times slower: scale waits);
#   * every process (pytest and any server/subprocess it starts) logs sanitizer reports to a
#     private directory; after pytest the reports are printed and the run fails if there is
#     any, even when the process that hit it was a child whose crash a test did not notice.
#
# Environment:
#   PYTHON                          interpreter (default: <repo>/.venv/bin/python, else python3)
#   CC                              compiler, as for the JIT (default: the JIT's own discovery)
#   HYPERSONIC_SANITIZE_CACHE_DIR   JIT cache for sanitized builds
#                                   (default: ${XDG_CACHE_HOME:-~/.cache}/hypersonic/sanitize-cache)
#   HYPERSONIC_SANITIZE_LEAKS=1     opt-in LeakSanitizer: CPython "leaks" by design at exit, so
#                                   only leak reports with a frame in a JIT module (_hs_*) fail
#   HYPERSONIC_SANITIZE_KEEP_LOGS=1 keep the report directory (its path is printed)
# Exit status: pytest's when non-zero; else 1 when a sanitizer reported; else 0.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

if [[ -z ${PYTHON:-} ]]; then
  if [[ -x $repo/.venv/bin/python ]]; then PYTHON=$repo/.venv/bin/python; else PYTHON=python3; fi
fi

# The compiler: $CC when set; else clang when it has its ASan runtime, since with gcc's
# ASan+UBSan pair UBSan ignores log_path and writes to the dying process's stderr (which
# pytest's capture swallows); else the JIT's own choice. Fails with the JIT's message if none.
if [[ -z ${CC:-} ]] && command -v clang >/dev/null 2>&1 &&
   [[ -e $(clang -print-file-name="libclang_rt.asan-$(uname -m).so") ]]; then
  export CC=clang
fi
cc=$("$PYTHON" -c 'from hypersonic.jit import find_compiler; print(find_compiler().argv[0])')

flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
if "$cc" --version 2>/dev/null | grep -qi clang; then
  # clang links no sanitizer runtime into shared objects unless asked for the shared one;
  # its ASan runtime carries UBSan too (one runtime: UBSAN_OPTIONS share ASan's common flags).
  flags="$flags -shared-libasan"
  runtime=$("$cc" -print-file-name="libclang_rt.asan-$(uname -m).so")
  separate_ubsan=0
else
  runtime=$("$cc" -print-file-name=libasan.so)
  separate_ubsan=1  # gcc: libubsan is its own runtime, loaded as a dependency of the modules
fi
if [[ $runtime != /* || ! -e $runtime ]]; then
  echo "sanitize.sh: $cc has no ASan runtime (looked for $runtime)." >&2
  echo "  Debian/Ubuntu: apt-get install libasan8 (gcc) or libclang-rt-dev (clang); Fedora: dnf install libasan libubsan" >&2
  exit 2
fi
runtime=$(readlink -f "$runtime")

logdir=$(mktemp -d "${TMPDIR:-/tmp}/hypersonic-sanitize.XXXXXX")
cleanup() {
  if [[ ${HYPERSONIC_SANITIZE_KEEP_LOGS:-0} == 1 ]]; then
    echo "sanitize.sh: reports kept in $logdir" >&2
  else
    rm -rf -- "$logdir"
  fi
}
trap cleanup EXIT

leaks=${HYPERSONIC_SANITIZE_LEAKS:-0}
# exitcode is a flag common to ASan and LSan (LSAN_OPTIONS sets it too). In leak mode it must
# be 0, or CPython's own at-exit leaks would fail every Python subprocess; the reports in
# $logdir then decide alone (they always do too: see below).
detect_leaks=0 exitcode=86
[[ $leaks == 1 ]] && detect_leaks=1 exitcode=0

export HYPERSONIC_JIT_CFLAGS="${HYPERSONIC_JIT_CFLAGS:+$HYPERSONIC_JIT_CFLAGS }$flags"
export HYPERSONIC_CACHE_DIR=${HYPERSONIC_SANITIZE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hypersonic/sanitize-cache}
export PYTHONMALLOC=malloc
# Tests may scale their time budgets by this: sanitized runs are several times slower.
export HYPERSONIC_SANITIZED=1
# Leak mode: a leak's allocation stack must reach the JIT frame through CPython, which has no
# frame pointers, so the fast unwinder would stop inside libpython and a reference lost by our C
# (allocated by a CPython call) would carry no _hs_ frame and be ignored. The slow unwinder with
# a short context finds it (scripts/leak_check.py --positive-control demonstrates both).
unwind=""
[[ $leaks == 1 ]] && unwind="fast_unwind_on_malloc=0:malloc_context_size=12:"
export ASAN_OPTIONS="detect_leaks=$detect_leaks:${unwind}halt_on_error=1:abort_on_error=0:exitcode=$exitcode:log_path=$logdir/asan:strip_path_prefix=$repo/${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
# gcc's separate UBSan exits 87: it identifies a UBSan abort whose report could not be logged.
ubsan_exitcode=$exitcode
[[ $separate_ubsan == 1 ]] && ubsan_exitcode=87
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=$ubsan_exitcode:log_path=$logdir/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export LD_PRELOAD="$runtime${LD_PRELOAD:+ $LD_PRELOAD}"

echo "sanitize.sh: CC=$cc runtime=$runtime cache=$HYPERSONIC_CACHE_DIR leaks=$detect_leaks" >&2
[[ $# -eq 0 ]] && set -- "$repo/tests"
status=0
"$PYTHON" -m pytest "$@" || status=$?
unset LD_PRELOAD

# Sanitizer reports from any process. Leak blocks (paragraphs) count only with a JIT frame.
errors=$(grep -l -E 'ERROR: (AddressSanitizer|UndefinedBehaviorSanitizer)|runtime error:' "$logdir"/* 2>/dev/null || true)
ours_leaking=""
if [[ $leaks == 1 ]]; then
  ours_leaking=$(awk 'BEGIN { RS = "" } /leak of/ && /_hs_/ { print FILENAME }' "$logdir"/* 2>/dev/null | sort -u || true)
fi
if [[ -n $errors || -n $ours_leaking ]]; then
  for f in $errors $ours_leaking; do
    echo "===== sanitizer report: $f" >&2
    cat -- "$f" >&2
  done
  echo "sanitize.sh: FAILED: sanitizer reports above (pytest exit status $status)" >&2
  [[ $status -ne 0 ]] || status=1
elif [[ $separate_ubsan == 1 && $status -eq 87 ]]; then
  echo "sanitize.sh: FAILED: UBSan aborted the run; its report went to the failing process's stderr" >&2
  echo "  (gcc's UBSan ignores log_path next to ASan): re-run with -s, or with CC=clang" >&2
elif [[ $leaks == 1 ]]; then
  n=$(cat "$logdir"/* 2>/dev/null | grep -c 'leak of' || true)
  echo "sanitize.sh: no leak with a JIT-module frame ($n leak reports from CPython itself ignored)" >&2
fi
exit "$status"
