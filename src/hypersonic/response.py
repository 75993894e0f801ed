"""What a handler returns, and how every accepted return value becomes HTTP.

A handler (static or dynamic) may return:

* ``str`` -> 200, ``text/plain; charset=utf-8``, the text UTF-8 encoded;
* ``bytes`` (or ``bytearray``/``memoryview``) -> 200, ``text/plain; charset=utf-8``;
* ``dict`` or ``list`` -> 200, ``application/json`` (compact, UTF-8);
* :class:`Response` -> its status, headers, body and content type;
* a tuple ``(status, headers, body)`` -> like ``Response(body, status, headers)``;
* :class:`FileResponse` -> (part of) a file, sent by the server loop from the
  file descriptor (sendfile(2) on Linux) without reading it into memory.

The C loop serialises ``str``/``bytes``/``dict``/``list`` itself (the fast
path); :class:`Response` and tuples go through :func:`finalize`, which is also
what ``compile()`` uses to bake static routes, so both paths agree.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
import stat
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ._status import MAX_STATUS, MIN_STATUS, status_has_no_body

__all__ = ["Response", "FileResponse", "HeadersArg", "finalize", "encode_json", "TEXT_PLAIN", "APPLICATION_JSON"]

TEXT_PLAIN = "text/plain; charset=utf-8"
APPLICATION_JSON = "application/json"

#: Header argument forms: a mapping, or an iterable of (name, value) pairs
#: (pairs allow a repeated field such as Set-Cookie).
HeadersArg = Union[Mapping[str, Any], Iterable[Tuple[str, Any]], None]

# RFC 9110 5.1: field-name = token; 5.5: field-value has no CR, LF or NUL.
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

# Fields the server owns, dropped from a handler's headers: Content-Length is
# always computed from the body, no transfer coding is used, Date comes from the
# loop's clock, and Connection follows the request and the server's state.
_SERVER_OWNED = frozenset({"content-length", "transfer-encoding", "date", "connection"})

def _json_default(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _make_json_chunks() -> Callable[[Any, int], Any]:
    """The JSON encoder the C loop calls as ``f(value, 0)``: it returns the text
    or a sequence of text chunks (the C joins them). Compact separators, UTF-8
    (no ASCII escaping). Uses the json module's C encoder directly when present,
    which avoids JSONEncoder.encode's per-call Python setup."""
    import json.encoder as json_encoder

    c_make_encoder = getattr(json_encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # pragma: no cover - CPython always has _json
        encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

        def encode(value: Any, _level: int = 0) -> str:
            return encoder.encode(value)

        return encode
    encode_basestring = json_encoder.encode_basestring
    # markers=None: no circular-reference bookkeeping; a cycle ends in RecursionError (-> 500)
    chunks: Callable[[Any, int], Any] = c_make_encoder(
        None, _json_default, encode_basestring, None, ":", ",", False, False, True
    )
    return chunks


#: f(value, 0) -> str or sequence of str chunks; see _make_json_chunks.
json_chunks = _make_json_chunks()


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, the encoding used for dict/list results."""
    chunks = json_chunks(value, 0)
    return (chunks if isinstance(chunks, str) else "".join(chunks)).encode("utf-8")


def _normalize_headers(headers: HeadersArg) -> List[Tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        items: Iterable[Any] = headers.items()
    elif isinstance(headers, (str, bytes)):
        raise TypeError("headers must be a mapping or an iterable of (name, value) pairs, not a string")
    else:
        items = headers
    out: List[Tuple[str, str]] = []
    try:
        iterator = iter(items)
    except TypeError:
        raise TypeError(
            f"headers must be a mapping or an iterable of (name, value) pairs, not {type(headers).__name__}"
        ) from None
    for item in iterator:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise TypeError(f"headers: each item must be a (name, value) pair, got {item!r}") from None
        if not isinstance(name, str) or not _TOKEN_RE.match(name):
            raise ValueError(f"headers: invalid field name {name!r} (must be an RFC 9110 token)")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        elif not isinstance(value, str):
            value = str(value)
        if _BAD_VALUE_RE.search(value):
            raise ValueError(f"headers: value of {name!r} contains CR, LF or another control character")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"headers: value of {name!r} is not ISO-8859-1 text (RFC 9110 5.5)") from None
        out.append((name, value.strip(" \t")))
    return out


def check_status_and_type(status: Any, content_type: Any) -> None:
    """Raise TypeError/ValueError (naming the argument) unless ``status`` is an
    int from MIN_STATUS to MAX_STATUS and ``content_type`` is None or a str
    without control characters. Shared by Response and Stream.headers()."""
    if isinstance(status, bool) or not isinstance(status, int):
        raise TypeError(f"status must be an int, not {type(status).__name__}")
    if not MIN_STATUS <= status <= MAX_STATUS:
        raise ValueError(f"status must be between {MIN_STATUS} and {MAX_STATUS}, got {status}")
    if content_type is not None:
        if not isinstance(content_type, str):
            raise TypeError(f"content_type must be a str, not {type(content_type).__name__}")
        if _BAD_VALUE_RE.search(content_type):
            raise ValueError("content_type contains CR, LF or another control character")


class Response:
    """An explicit response: ``Response(body, status=200, headers=None, content_type=None)``.

    body: ``str`` (UTF-8), ``bytes``, ``dict``/``list`` (JSON) or ``None`` (empty).
    status: an int from 200 to 599.
    headers: a mapping or an iterable of ``(name, value)`` pairs; names are RFC
        9110 tokens and values may not contain CR/LF. A header named like a
        security header replaces it. ``Content-Length``, ``Transfer-Encoding``,
        ``Date`` and ``Connection`` belong to the server and are ignored here.
    content_type: overrides the type implied by ``body``.
    """

    __slots__ = ("body", "status", "headers", "content_type")

    def __init__(
        self,
        body: Any = None,
        status: int = 200,
        headers: HeadersArg = None,
        content_type: Optional[str] = None,
    ) -> None:
        check_status_and_type(status, content_type)
        if not isinstance(body, (str, bytes, bytearray, memoryview, dict, list, type(None))):
            raise TypeError(f"body must be str, bytes, dict, list or None, not {type(body).__name__}")
        self.body = body
        self.status = status
        self.headers: List[Tuple[str, str]] = _normalize_headers(headers)
        self.content_type = content_type

    def copy(self) -> "Response":
        """A copy whose header list can be changed without touching this one."""
        clone = Response.__new__(Response)
        clone.body = self.body
        clone.status = self.status
        clone.headers = list(self.headers)
        clone.content_type = self.content_type
        return clone

    def __repr__(self) -> str:
        return f"Response(status={self.status}, content_type={self.content_type!r}, headers={self.headers!r})"


def _body_bytes(body: Any) -> Tuple[bytes, Optional[str]]:
    """(encoded body, implied content type) for a body value."""
    if isinstance(body, str):
        return body.encode("utf-8"), TEXT_PLAIN
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), TEXT_PLAIN
    if isinstance(body, (dict, list)):
        return encode_json(body), APPLICATION_JSON
    if body is None:
        return b"", None
    raise TypeError(f"body must be str, bytes, dict, list or None, not {type(body).__name__}")


def coerce(result: Any) -> Response:
    """Turn any accepted handler result into a :class:`Response`.

    Raises TypeError (unsupported type, including ``None``) or ValueError
    (bad status or headers) with a message saying what was wrong.
    """
    if isinstance(result, Response):
        return result
    if isinstance(result, tuple):
        if len(result) != 3:
            raise TypeError(f"a tuple result must be (status, headers, body), got a tuple of {len(result)}")
        status, headers, body = result
        return Response(body, status=status, headers=headers)
    if result is None:
        raise TypeError("handler returned None; return str, bytes, dict, list, Response or (status, headers, body)")
    if isinstance(result, (str, bytes, bytearray, memoryview, dict, list)):
        return Response(result)
    raise TypeError(
        f"handler returned {type(result).__name__}; return str, bytes, dict, list, Response "
        "or (status, headers, body)"
    )


#: Serialised form of a file body: (status, header_block, fd, offset, length).
FileResult = Tuple[int, bytes, int, int, int]

_mime_table: Optional[mimetypes.MimeTypes] = None


def guess_type(name: str) -> Tuple[Optional[str], Optional[str]]:
    """(type, encoding) of a file name from the standard library's own table only -- a fresh
    MimeTypes() ignores /etc/mime.types, so every machine answers alike. Built on first use."""
    global _mime_table
    if _mime_table is None:
        _mime_table = mimetypes.MimeTypes()
    return _mime_table.guess_type(name, strict=False)


class PreparedResponse:
    """A response whose header block is already serialised (internal: static files).

    ``block`` holds the field lines (each ending CRLF), security headers
    included; the server adds Date, Content-Length and Connection.
    """

    __slots__ = ("status", "block", "body")

    def __init__(self, status: int, block: bytes, body: bytes) -> None:
        self.status = status
        self.block = block
        self.body = body


class OpenFileResponse:
    """A file body on an already open descriptor (internal: static files).

    The server owns ``fd`` once :func:`finalize` hands it over (it closes it
    when the body is sent or the connection closes); if never handed over, it is
    closed when this object is collected.
    """

    __slots__ = ("status", "block", "fd", "offset", "length")

    def __init__(self, status: int, block: bytes, fd: int, offset: int, length: int) -> None:
        self.status = status
        self.block = block
        self.fd = fd
        self.offset = offset
        self.length = length

    def take(self) -> FileResult:
        """The serialised result; the descriptor now belongs to the caller."""
        fd, self.fd = self.fd, -1
        return self.status, self.block, fd, self.offset, self.length

    def __del__(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class FileResponse:
    """A response whose body is a file (or a byte range of it), streamed by the server.

    ``FileResponse(path, status=200, headers=None, content_type=None, *, offset=0, length=None)``

    The file is opened when the response is serialised; the server sends it
    from the descriptor (sendfile(2) on Linux, read+send elsewhere) without
    loading it into memory and closes it when done. content_type defaults to
    the standard library's guess from the file name (``application/octet-stream``
    when unknown). offset/length select a part (length None: to the end).
    Sets no validators or caching headers: :meth:`Hypersonic.static` does
    (ETag, conditionals, ranges). A missing or non-regular file is a 500.
    """

    __slots__ = ("path", "status", "headers", "content_type", "offset", "length")

    def __init__(self, path: Union[str, "os.PathLike[str]"], status: int = 200, headers: HeadersArg = None,
                 content_type: Optional[str] = None, *, offset: int = 0, length: Optional[int] = None) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
        for name, value in (("offset", offset), ("length", length)):
            if value is None and name == "length":
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        shape = Response(None, status=status, headers=headers, content_type=content_type)
        self.path = os.fspath(path)
        self.status = shape.status
        self.headers = shape.headers
        self.content_type = content_type
        self.offset = offset
        self.length = length

    def open(self, security_headers: Sequence[Tuple[str, str]]) -> FileResult:
        """Open the file and serialise: ``(status, header_block, fd, offset, length)``; the caller owns fd."""
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ValueError(f"FileResponse: {self.path!r} is not a regular file")
            offset = min(self.offset, info.st_size)
            available = info.st_size - offset
            length = available if self.length is None else min(self.length, available)
            content_type = self.content_type or guess_type(self.path)[0] or "application/octet-stream"
            response = Response(None, status=self.status, headers=self.headers, content_type=content_type)
            status, block, _ = finalize(response, security_headers)
        except BaseException:
            os.close(fd)
            raise
        if status_has_no_body(status):
            os.close(fd)
            fd, length = -1, 0
        return status, block, fd, offset, length


# id(security_headers) -> (that sequence, its field lines, its lower-case names): an app
# passes the same list on every call, so its block is built once.
_SECURITY_PARTS: Dict[int, Tuple[Sequence[Tuple[str, str]], str, FrozenSet[str]]] = {}


def _security_parts(security_headers: Sequence[Tuple[str, str]]) -> Tuple[str, FrozenSet[str]]:
    cached = _SECURITY_PARTS.get(id(security_headers))
    if cached is None or cached[0] is not security_headers:
        block = "".join(f"{n}: {v}\r\n" for n, v in security_headers)
        cached = (security_headers, block, frozenset(n.lower() for n, _ in security_headers))
        if len(_SECURITY_PARTS) > 64:  # many short-lived sequences (tests): start over
            _SECURITY_PARTS.clear()
        _SECURITY_PARTS[id(security_headers)] = cached
    return cached[1], cached[2]


def check_header_list(headers: Any) -> None:
    """Raise TypeError/ValueError unless ``headers`` is a list of (token, str) pairs whose
    values hold no CR, LF or other control character: what after-hooks appended
    to a Response is checked with this before it is serialised (one regex over
    all names and one over all values; the precise message comes from
    _normalize_headers)."""
    try:
        name_list = [n for n, _ in headers]
        names = "".join(name_list)
        values = "".join(v for _, v in headers)
    except (TypeError, ValueError):
        _normalize_headers(headers)
        raise TypeError("headers must be a list of (str, str) pairs") from None
    if "" in name_list or (names and not _TOKEN_RE.match(names)) or _BAD_VALUE_RE.search(values):
        _normalize_headers(headers)  # raises, naming the bad field
        raise ValueError("headers: invalid field")  # pragma: no cover - _normalize_headers raised


def finalize(result: Any, security_headers: Sequence[Tuple[str, str]]) -> Tuple[Any, ...]:
    """Serialise a handler result to ``(status, header_block, body)``.

    header_block holds every field line (each ending CRLF) except ``Date``,
    ``Content-Length`` and ``Connection``, which the server adds: Content-Type,
    then the security headers not overridden by the handler, then the
    handler's headers. body is empty for 204 and 304.

    A file body (:class:`FileResponse`) serialises to
    ``(status, header_block, fd, offset, length)`` instead: the server sends
    ``length`` bytes of ``fd`` from ``offset`` and closes ``fd`` (-1: no body).
    """
    if isinstance(result, PreparedResponse):
        return result.status, result.block, result.body
    if isinstance(result, OpenFileResponse):
        return result.take()
    if isinstance(result, FileResponse):
        return result.open(security_headers)
    response = coerce(result)
    body, implied_type = _body_bytes(response.body)
    content_type = response.content_type if response.content_type is not None else implied_type
    security_block, security_names = _security_parts(security_headers)
    user = [(n, v) for n, v in response.headers if n.lower() not in _SERVER_OWNED]
    user_names = {n.lower() for n, _ in user}
    lines: List[str] = []
    if content_type is not None and "content-type" not in user_names:
        lines.append(f"Content-Type: {content_type}\r\n")
    if user_names.isdisjoint(security_names):
        lines.append(security_block)
    else:
        for name, value in security_headers:
            if name.lower() not in user_names:
                lines.append(f"{name}: {value}\r\n")
    for name, value in user:
        lines.append(f"{name}: {value}\r\n")
    if status_has_no_body(response.status):
        body = b""
    return response.status, "".join(lines).encode("latin-1"), body
