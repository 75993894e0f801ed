"""Run the C-level parser tests (tests/c, built with ASan+UBSan) under pytest.

The normal test command therefore covers hs_parser.c's table-driven, prefix,
guard-page and chunked-decoder tests, built twice (the little-endian SWAR fast
path and the portable scanners). ``make test`` prints
``test_parser: N passed, N failed`` (and ``test_parser_portable: ...``) and
exits non-zero on any failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

C_TESTS_DIR = Path(__file__).resolve().parent / "c"
# Building with sanitizers and running ~15k checks takes a few seconds.
MAKE_TIMEOUT_S = 300


# Sanitizer settings of the calling process (tests/sanitize.sh preloads an ASan
# runtime into Python): the C tests link their own runtime and set their own
# options, and a preloaded one aborts them ("incompatible ASan runtimes").
_INHERITED_SANITIZER_VARS = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _INHERITED_SANITIZER_VARS}


def _have_toolchain() -> bool:
    compiler = os.environ.get("CC", "gcc")
    return shutil.which("make") is not None and shutil.which(compiler) is not None


@pytest.mark.skipif(sys.platform == "win32", reason="the C tests use mmap guard pages (POSIX)")
@pytest.mark.skipif(not _have_toolchain(), reason="make or the C compiler is not installed")
def test_c_parser_suite_passes_under_sanitizers(tmp_path: Path) -> None:
    """Every C parser/decoder check passes in an ASan+UBSan build."""
    build_dir = tmp_path / "build"
    result = subprocess.run(
        ["make", "-C", str(C_TESTS_DIR), "test", f"BUILD={build_dir}"],
        capture_output=True,
        text=True,
        timeout=MAKE_TIMEOUT_S,
        check=False,
        env=_clean_env(),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"make test failed ({result.returncode}):\n{output[-8000:]}"
    summaries = dict(re.findall(r"^(test_parser\w*): \d+ passed, (\d+) failed$", output, re.MULTILINE))
    assert set(summaries) == {"test_parser", "test_parser_portable"}, output[-8000:]
    assert all(failed == "0" for failed in summaries.values()), output[-8000:]
