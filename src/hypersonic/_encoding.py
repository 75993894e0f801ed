"""Content negotiation for ``Accept-Encoding`` (RFC 9110 section 12.5.3).

One function decides, for every part of Hypersonic that can send gzip
(dynamic compression, baked variants of static routes, static files), whether a
request accepts it. The C loop has the same rules in ``hs_accept.c``; the two
are tested against each other.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["accepts_gzip", "coding_qvalue"]

_OWS = " \t"


def _qvalue(params: str) -> Optional[float]:
    """The q of a ``;q=...`` parameter list; 1.0 when absent, None when malformed."""
    q = 1.0
    for param in params.split(";"):
        param = param.strip(_OWS)
        if not param:
            continue
        name, eq, value = param.partition("=")
        if name.strip(_OWS).lower() != "q":
            continue  # RFC 9110 does not define other parameters here; ignore them
        value = value.strip(_OWS)
        # qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
        if not eq or not value or len(value) > 5 or value[0] not in "01":
            return None
        if len(value) > 1 and (value[1] != "." or not all(ch in "0123456789" for ch in value[2:])):
            return None
        q = float(value)
        if q > 1.0:
            return None
    return q


def coding_qvalue(header: Optional[str], coding: str) -> float:
    """The q-value ``header`` (an Accept-Encoding field value) gives ``coding``.

    An explicit entry for the coding wins over ``*``; a coding not named and
    not covered by ``*`` gets 0 (``identity`` gets 1 unless refused). An absent
    header accepts nothing but identity. Malformed members are ignored.
    """
    coding = coding.lower()
    if header is None:
        return 1.0 if coding == "identity" else 0.0
    explicit: Optional[float] = None
    star: Optional[float] = None
    for member in header.split(","):
        name, _, params = member.partition(";")
        name = name.strip(_OWS).lower()
        if not name:
            continue
        q = _qvalue(params)
        if q is None:
            continue
        if name == coding or (coding == "gzip" and name == "x-gzip"):
            explicit = q if explicit is None else max(explicit, q)
        elif name == "*":
            star = q
    if explicit is not None:
        return explicit
    if star is not None:
        return star
    return 1.0 if coding == "identity" else 0.0


def accepts_gzip(header: Optional[str]) -> bool:
    """True when an Accept-Encoding value allows gzip (q > 0, named or by ``*``)."""
    return coding_qvalue(header, "gzip") > 0.0
