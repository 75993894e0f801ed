"""HTTP status codes and their reason phrases.

The phrases are those of RFC 9110 section 15 (and the IANA "HTTP Status Code
Registry" for codes defined elsewhere: 102, 103, 207, 208, 226, 425, 428, 429,
431, 451, 506, 507, 508, 510, 511). RFC 9112 section 4 allows an empty
reason-phrase, so a code missing here is still sent, as ``HTTP/1.1 299 ``.

This table is the single source of truth: the generated C of every compiled
app embeds it (hypersonic._codegen), so static and dynamic responses agree.
"""

from __future__ import annotations

from typing import Dict

__all__ = ["REASON_PHRASES", "reason_phrase", "MIN_STATUS", "MAX_STATUS", "status_has_no_body"]

#: Smallest and largest status a handler may return (final responses only;
#: 1xx are interim and never a handler's answer).
MIN_STATUS = 200
MAX_STATUS = 599

REASON_PHRASES: Dict[int, str] = {
    # RFC 9110 15.2 Informational 1xx
    100: "Continue",
    101: "Switching Protocols",
    102: "Processing",  # RFC 2518
    103: "Early Hints",  # RFC 8297
    # RFC 9110 15.3 Successful 2xx
    200: "OK",
    201: "Created",
    202: "Accepted",
    203: "Non-Authoritative Information",
    204: "No Content",
    205: "Reset Content",
    206: "Partial Content",
    207: "Multi-Status",  # RFC 4918
    208: "Already Reported",  # RFC 5842
    226: "IM Used",  # RFC 3229
    # RFC 9110 15.4 Redirection 3xx
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    305: "Use Proxy",
    306: "Unused",  # RFC 9110 15.4.7: "(Unused)"
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    # RFC 9110 15.5 Client Error 4xx
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    417: "Expectation Failed",
    418: "Unused",  # RFC 9110 15.5.19: "(Unused)"
    421: "Misdirected Request",
    422: "Unprocessable Content",
    423: "Locked",  # RFC 4918
    424: "Failed Dependency",  # RFC 4918
    425: "Too Early",  # RFC 8470
    426: "Upgrade Required",
    428: "Precondition Required",  # RFC 6585
    429: "Too Many Requests",  # RFC 6585
    431: "Request Header Fields Too Large",  # RFC 6585
    451: "Unavailable For Legal Reasons",  # RFC 7725
    # RFC 9110 15.6 Server Error 5xx
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates",  # RFC 2295
    507: "Insufficient Storage",  # RFC 4918
    508: "Loop Detected",  # RFC 5842
    510: "Not Extended",  # RFC 2774
    511: "Network Authentication Required",  # RFC 6585
}


def reason_phrase(status: int) -> str:
    """The reason phrase for ``status`` ("" for an unregistered code)."""
    return REASON_PHRASES.get(status, "")


def status_has_no_body(status: int) -> bool:
    """True for statuses whose responses never carry content (RFC 9110 6.4.1):
    1xx, 204 and 304."""
    return status < 200 or status in (204, 304)
