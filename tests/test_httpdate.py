"""hypersonic._httpdate.http_date is exactly the stdlib's RFC 9110 IMF-fixdate."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from hypersonic._httpdate import http_date


@pytest.mark.parametrize("seconds", [0, 784111777, 951782400, 1767225599.9, 4102444799])
def test_http_date_matches_email_utils_formatdate(seconds: float) -> None:
    assert http_date(seconds) == formatdate(seconds, usegmt=True)
