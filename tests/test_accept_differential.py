"""hs_accept.c against hypersonic._encoding: the C loop and Python decide gzip alike.

The C side runs as tests/c/accept_oracle (built with ASan+UBSan by
``make -C tests/c test-accept``, which also runs the C unit tests): each line
sent is a set of Accept-Encoding field values, which it puts into a real
request head, parses with hs_parse_request and answers hs_accept_gzip's
verdict. Hypothesis generates the values from the pieces the grammar is made
of (codings, q-values well and badly formed, separators, OWS, case), so the
edges are hit far more often than with random bytes; the oracle for each set
is ``accepts_gzip(", ".join(values))``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hypersonic._encoding import accepts_gzip  # noqa: E402

C_TESTS_DIR = Path(__file__).resolve().parent / "c"
FIELD_SEP = "\x1f"
NO_FIELD = "\x1e"
MAKE_TIMEOUT_S = 300
_INHERITED_SANITIZER_VARS = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX C tests"),
    pytest.mark.skipif(shutil.which("make") is None or shutil.which(os.environ.get("CC", "gcc")) is None,
                       reason="make or the C compiler is not installed"),
]


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in _INHERITED_SANITIZER_VARS}


class Oracle:
    """The accept_oracle process, driven one line at a time."""

    def __init__(self, binary: Path) -> None:
        env = dict(_clean_env(), ASAN_OPTIONS="detect_leaks=1:abort_on_error=1", UBSAN_OPTIONS="print_stacktrace=1")
        self.proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)

    def ask(self, values: List[str]) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        line = NO_FIELD if not values else FIELD_SEP.join(values)
        self.proc.stdin.write(line.encode("latin-1") + b"\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().decode().strip()
        if not answer:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise AssertionError(f"accept_oracle died: {err[-4000:]}")
        return answer

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oracle]:
    build = tmp_path_factory.mktemp("accept-build")
    res = subprocess.run(["make", "-C", str(C_TESTS_DIR), "test-accept", f"BUILD={build}"], capture_output=True,
                         text=True, timeout=MAKE_TIMEOUT_S, env=_clean_env())
    output = res.stdout + res.stderr
    assert res.returncode == 0, output[-8000:]
    assert re.search(r"^test_accept: \d+ passed, 0 failed$", output, re.MULTILINE), output[-4000:]
    proc = Oracle(build / "accept_oracle")
    yield proc
    assert proc.close() == 0


def _trimmed(value: str) -> str:
    # The parser trims OWS around a field value; Python sees the same trimmed value.
    return value.strip(" \t")


# ---- generated Accept-Encoding values ------------------------------------------------------

_OWS = st.sampled_from(["", "", " ", "\t", "  ", " \t"])
_CODING = st.sampled_from(["gzip", "GZIP", "Gzip", "x-gzip", "X-GZIP", "*", "br", "deflate", "identity",
                           "gzi", "gzipx", "g zip", "**", "", "compress", "zstd", "\xe9gzip"])
_QVALUE = st.sampled_from(["0", "1", "0.", "1.", "0.0", "0.5", "0.001", "0.999", "0.000", "1.0", "1.000",
                           "1.001", "0.1234", "2", "", ".5", "0,5", "abc", "0.5x", "-0", "01", "1e0", "0.a"])
_QNAME = st.sampled_from(["q", "Q", "qq", "level", "q ", " q"])


@st.composite
def _param(draw: st.DrawFn) -> str:
    name = draw(_QNAME)
    if draw(st.booleans()):
        return f"{name}{draw(_OWS)}={draw(_OWS)}{draw(_QVALUE)}"
    return name if draw(st.booleans()) else f"{name}="


@st.composite
def _member(draw: st.DrawFn) -> str:
    text = draw(_CODING)
    for param in draw(st.lists(_param(), max_size=3)):
        text += f"{draw(_OWS)};{draw(_OWS)}{param}"
    return f"{draw(_OWS)}{text}{draw(_OWS)}"


@st.composite
def _field_value(draw: st.DrawFn) -> str:
    return ",".join(draw(st.lists(_member(), max_size=5)))


# A few fully free-form values too (printable ASCII + tab + a Latin-1 byte: what a field may hold).
_FREE = st.text(alphabet=st.sampled_from(list("gzipGZIPx-*;=,.q0123456789 \tbr\xe9")), max_size=40)
_VALUES = st.lists(st.one_of(_field_value(), _FREE), max_size=3)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=_VALUES)
def test_c_and_python_agree_on_generated_headers(oracle: Oracle, values: List[str]) -> None:
    answer = oracle.ask(values)
    assert not answer.startswith("E"), (values, answer)  # the head itself must parse
    python = accepts_gzip(", ".join(_trimmed(v) for v in values) if values else None)
    assert answer == ("1" if python else "0"), values


@pytest.mark.parametrize(
    "values, expected",
    [
        ([], False),
        (["gzip"], True),
        (["gzip;q=0"], False),
        (["br", "gzip"], True),
        (["*", "gzip;q=0"], False),
        (["", "gzip"], True),
        (["gzip;q=0.5x, *"], True),
    ],
)
def test_known_values(oracle: Oracle, values: List[str], expected: bool) -> None:
    assert oracle.ask(values) == ("1" if expected else "0")
    assert accepts_gzip(", ".join(values) if values else None) is expected
