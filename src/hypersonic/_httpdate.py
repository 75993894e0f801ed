"""The IMF-fixdate of RFC 9110 5.6.7 (``Sun, 06 Nov 1994 08:49:37 GMT``), without locale.

Kept apart (rather than ``email.utils.formatdate``) because importing the
``email`` package costs a serving process several MiB of memory.
"""

from __future__ import annotations

import time
from typing import Optional

__all__ = ["http_date"]

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(seconds: Optional[float] = None) -> str:
    """The HTTP date of `seconds` since the epoch (now when None), always in GMT and English."""
    t = time.gmtime(seconds)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")
