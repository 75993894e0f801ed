"""Accept-Encoding negotiation (RFC 9110 12.5.3): hypersonic._encoding."""

from __future__ import annotations

import pytest

from hypersonic._encoding import accepts_gzip, coding_qvalue


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("GZIP", True),
        ("x-gzip", True),
        ("deflate, gzip", True),
        ("gzip, deflate, br", True),
        ("br", False),
        ("identity", False),
        ("gzip;q=0", False),
        ("gzip; q=0", False),
        ("gzip;Q=0.000", False),
        ("gzip;q=0.001", True),
        ("gzip;q=1", True),
        ("gzip;q=1.000", True),
        ("*", True),
        ("*;q=0", False),
        ("*, gzip;q=0", False),
        ("gzip;q=0, *", False),
        ("gzip;q=0.5, *;q=0", True),
        ("br;q=1, *;q=0.1", True),
        ("gzip;q=2", False),          # malformed member: ignored
        ("gzip;q=abc", False),
        ("gzip;q=0.5x", False),
        ("gzip;q=0.1234", False),
        ("gzip;level=9", True),       # unknown parameter ignored
        (" , ,gzip , ", True),
    ],
)
def test_accepts_gzip(header, expected):
    assert accepts_gzip(header) is expected


def test_identity_is_acceptable_unless_refused():
    assert coding_qvalue(None, "identity") == 1.0
    assert coding_qvalue("gzip", "identity") == 1.0
    assert coding_qvalue("identity;q=0", "identity") == 0.0
    assert coding_qvalue("*;q=0", "identity") == 0.0


def test_explicit_entry_wins_over_wildcard():
    assert coding_qvalue("*;q=0.2, gzip;q=0.7", "gzip") == 0.7
    assert coding_qvalue("gzip;q=0.7, *;q=0.2", "gzip") == 0.7
