"""Access log options: where lines go, and the format compiled into the C op list.

The lines themselves are written by the C loop (``csrc/hs_accesslog.c``), one
per response, without calling Python; this module only checks the options and
turns a format string into the ``(op name, argument)`` pairs the C side walks.

Format syntax (nginx's ``log_format`` variables): literal text with
``$name`` or ``${name}`` variables; ``$$`` is a literal ``$``.

==================== =========================================================
``$remote_addr``     client IP address (IPv4-mapped IPv6 shown as IPv4;
                     ``unix`` for a Unix-socket client)
``$remote_user``     always ``-`` (no authentication here); kept for the
                     common/combined layouts
``$request``         ``METHOD target HTTP/1.x``
``$request_method``  the method
``$request_uri``     the request-target as sent (path and query)
``$uri``             the path part of the target
``$args``            the query string (``-`` when there is none)
``$server_protocol`` ``HTTP/1.0`` or ``HTTP/1.1``
``$status``          response status code
``$bytes_sent``      bytes of the whole response (status line, fields, body)
``$body_bytes_sent`` bytes of the response body
``$request_time_us`` microseconds from the read that brought the request's
                     first byte to its response being queued
``$request_time``    the same in seconds with millisecond precision
``$request_id``      the id in the response's ``X-Request-ID`` (the one
                     ``app.request_id()`` echoes, generated or the client's;
                     its header name if configured otherwise), else the
                     request's, ``-`` when neither has one
``$http_NAME``       any request header: NAME lower case, ``_`` for ``-``
                     (``$http_user_agent``, ``$http_x_forwarded_for``)
``$sent_http_NAME``  any response header, named the same way
                     (``$sent_http_content_type``, ``$sent_http_location``)
``$time_local``      ``29/Nov/2026:20:08:00 +0000`` (local time)
``$time_iso8601``    ``2026-11-29T20:08:00+00:00``
``$msec``            Unix time with milliseconds
``$pid``             the worker's process id
==================== =========================================================

A field that does not exist for a response (the method of a request whose
request line did not parse, an absent header) is written as ``-``. Values from
the request are escaped as nginx does: ``"``, ``\\``, control bytes and bytes
>= 0x80 become ``\\xHH``.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Optional, Tuple, Type

__all__ = ["COMMON_FORMAT", "COMBINED_FORMAT", "FORMATS", "VARIABLES", "check_writable", "compile_format",
           "resolve_destination"]

#: The Common Log Format (NCSA).
COMMON_FORMAT = '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent'
#: The Combined Log Format: common plus Referer and User-Agent.
COMBINED_FORMAT = COMMON_FORMAT + ' "$http_referer" "$http_user_agent"'
#: Named formats accepted for ``access_log_format``.
FORMATS: Dict[str, str] = {"common": COMMON_FORMAT, "combined": COMBINED_FORMAT}

#: Variable name -> (C op name, argument).
VARIABLES: Dict[str, Tuple[str, bytes]] = {
    "remote_addr": ("remote_addr", b""),
    "remote_user": ("literal", b"-"),
    "request": ("request", b""),
    "request_method": ("method", b""),
    "request_uri": ("target", b""),
    "uri": ("path", b""),
    "args": ("query", b""),
    "server_protocol": ("protocol", b""),
    "status": ("status", b""),
    "bytes_sent": ("bytes_sent", b""),
    "body_bytes_sent": ("body_bytes_sent", b""),
    "request_time_us": ("duration_us", b""),
    "request_time": ("duration_s", b""),
    "request_id": ("request_id", b"x-request-id"),
    "time_local": ("time_local", b""),
    "time_iso8601": ("time_iso8601", b""),
    "msec": ("msec", b""),
    "pid": ("pid", b""),
}

#: Permissions of a new log file before the umask (HS_ALOG_FILE_MODE in hs_servermod.c).
_FILE_MODE = 0o644
_HEADER_PREFIX = "http_"
_SENT_HEADER_PREFIX = "sent_http_"
_VARIABLE_RE = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z0-9_]*))")
_NAME_RE = re.compile(r"^[a-z0-9_]+$")
# RFC 9110 token characters other than '_' that an HTTP field name may hold after the mapping.
_HEADER_NAME_RE = re.compile(r"^[a-z0-9-]+$")
# Control bytes would break the one-line-per-request contract.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _known() -> str:
    return ", ".join("$" + name for name in VARIABLES) + ", $http_<header>, $sent_http_<header>"


def compile_format(fmt: Any, request_id_header: str = "X-Request-ID") -> Tuple[Tuple[str, bytes], ...]:
    """Compile ``fmt`` ("common", "combined" or a format string) into the C op list.

    ``$request_id`` logs the response's ``request_id_header`` (the id
    ``app.request_id()`` echoes), else the request's.

    Raises TypeError for a non-str and ValueError naming the offending variable
    (and its position) for an unknown variable, a bare ``$`` or a control
    character.
    """
    if not isinstance(fmt, str):
        raise TypeError(f"access_log_format must be a str ('common', 'combined' or a format), "
                        f"not {type(fmt).__name__}")
    text = FORMATS.get(fmt, fmt)
    if not text:
        raise ValueError("access_log_format must not be empty")
    bad = _CONTROL_RE.search(text)
    if bad:
        raise ValueError(f"access_log_format: control character {bad.group()!r} at position {bad.start()}; "
                         "a log line must stay on one line")
    ops: List[Tuple[str, bytes]] = []
    literal: List[str] = []
    pos = 0
    while pos < len(text):
        dollar = text.find("$", pos)
        if dollar < 0:
            literal.append(text[pos:])
            break
        literal.append(text[pos:dollar])
        if text.startswith("$$", dollar):
            literal.append("$")
            pos = dollar + 2
            continue
        match = _VARIABLE_RE.match(text, dollar)
        assert match is not None  # the pattern matches any "$"
        name = match.group(1) if match.group(1) is not None else match.group(2)
        if not name:
            raise ValueError(f"access_log_format: '$' at position {dollar} is not followed by a variable name; "
                             "write '$$' for a literal dollar sign")
        op = _variable_op(name, dollar, request_id_header)
        if literal:
            joined = "".join(literal)
            if joined:
                ops.append(("literal", joined.encode("utf-8")))
            literal = []
        ops.append(op)
        pos = match.end()
    joined = "".join(literal)
    if joined:
        ops.append(("literal", joined.encode("utf-8")))
    return tuple(ops)


def _variable_op(name: str, position: int, request_id_header: str) -> Tuple[str, bytes]:
    if name == "request_id":
        return ("request_id", request_id_header.lower().encode("ascii"))
    if name in VARIABLES:
        return VARIABLES[name]
    for prefix, op in ((_HEADER_PREFIX, "header"), (_SENT_HEADER_PREFIX, "sent_header")):
        if name.startswith(prefix) and _NAME_RE.match(name):
            header = name[len(prefix):].replace("_", "-")
            if header and _HEADER_NAME_RE.match(header):
                return (op, header.encode("ascii"))
    raise ValueError(f"access_log_format: unknown variable ${name} at position {position}; known: {_known()}")


def resolve_destination(access_log: Any) -> Optional[str]:
    """Where the lines go: None (off), "-" (standard output) or a file path.

    ``None``/``False`` is off; ``True`` and ``"-"`` are standard output; any
    other str or os.PathLike is a file, appended to (created if missing).
    Raises TypeError for anything else and ValueError for an empty path.
    """
    if access_log is None or access_log is False:
        return None
    if access_log is True:
        return "-"
    if isinstance(access_log, os.PathLike):
        access_log = os.fspath(access_log)
    if isinstance(access_log, bytes):
        access_log = os.fsdecode(access_log)
    if not isinstance(access_log, str):
        raise TypeError(f"access_log must be None, a bool, '-' (stdout) or a file path, "
                        f"not {type(access_log).__name__}")
    if not access_log:
        raise ValueError("access_log must not be an empty path (use None to turn the access log off)")
    return access_log


def check_writable(destination: Optional[str], error: Type[OSError] = OSError) -> None:
    """Fail early (run(), before binding) when the log file cannot be appended to:
    open it for appending, creating it if missing, and close it again. Each worker
    opens it again when it starts serving. Raises ``error`` (an OSError subclass)
    naming the path."""
    if destination is None or destination == "-":
        return
    try:
        fd = os.open(destination, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
    except OSError as exc:
        raise error(exc.errno, f"access_log: cannot append to {destination!r}: {exc.strerror}",
                    destination) from None
    os.close(fd)
