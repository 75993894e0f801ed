"""Response compression: what ``app.compress()`` configures and every decision it makes.

One :class:`Compression` object holds the settings (``min_size``, ``level``,
``types``) and answers, for both servers and for baking:

* :meth:`Compression.header_variants`: may a response with this status and
  field block be gzip-coded at all? If so, the identity block (with
  ``Vary: Accept-Encoding`` merged in) and the gzip block (the same plus
  ``Content-Encoding: gzip``). Not for 1xx/204/206/304, a block that already
  has a Content-Encoding, or a Content-Type outside ``types``;
* :meth:`Compression.negotiate`: the block and body to send, given whether the
  client accepts gzip (:func:`hypersonic._encoding.accepts_gzip`, or
  ``hs_accept_gzip`` in C): gzip only when the body is at least ``min_size``
  bytes and gzip makes it shorter;
* :meth:`Compression.gzip`: the gzip member (RFC 1952) of a body, from
  :mod:`zlib` (mtime 0, so the same body always gives the same bytes).

The C server gets :meth:`Compression.native_config`: the gzip callable, the
precomputed variants of the fixed text/JSON blocks, and :meth:`adjust` for
``Response``/tuple results, so it compresses the same way without parsing
field blocks itself.
"""

from __future__ import annotations

import functools
import re
import sys
import zlib
from typing import Any, Callable, Iterable, List, Optional, Tuple

__all__ = ["Compression", "DEFAULT_TYPES", "DEFAULT_MIN_SIZE", "DEFAULT_LEVEL", "request_accepts_gzip"]

#: Media types compressed by default: text and the structured text formats.
#: Already-compressed formats (images other than SVG, audio, video, archives,
#: fonts in woff/woff2) are deliberately absent.
DEFAULT_TYPES: Tuple[str, ...] = (
    "text/*",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/xml",
    "application/*+xml",
    "image/svg+xml",
)
#: Bodies shorter than this many bytes are sent as they are (gzip's ~20 bytes
#: of framing and the CPU cost are not worth it for small responses).
DEFAULT_MIN_SIZE = 1024
#: zlib compression level (1 fastest .. 9 smallest).
DEFAULT_LEVEL = 6
MIN_LEVEL, MAX_LEVEL = 1, 9

# gzip framing for zlib (RFC 1952): window bits 15 + 16.
_GZIP_WBITS = 31
# Statuses whose responses are never compressed: no content (204, 304) or a
# byte range of the identity representation (206; RFC 9110 14.4).
_NEVER_COMPRESSED = frozenset({204, 206, 304})
# Event streams are read incrementally by their clients: never buffered into gzip.
_NEVER_COMPRESSED_TYPES = frozenset({"text/event-stream"})
# RFC 9110 5.6.2 token.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TYPE_PATTERN_RE = re.compile(rf"^({_TOKEN})/(\*|\*\+{_TOKEN}|{_TOKEN})$")
_VARY_LINE = b"Vary: Accept-Encoding\r\n"
_CONTENT_ENCODING_LINE = b"Content-Encoding: gzip\r\n"


def _make_gzip(level: int) -> Callable[[bytes], bytes]:
    """A function body -> gzip member at ``level``; zlib's C one-shot where it takes wbits."""
    if sys.version_info >= (3, 11):
        return functools.partial(zlib.compress, level=level, wbits=_GZIP_WBITS)

    def gzip_member(data: bytes) -> bytes:  # pragma: no cover - Python < 3.11
        compressor = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
        return compressor.compress(data) + compressor.flush()

    return gzip_member


def _check_types(types: Any) -> Tuple[str, ...]:
    if isinstance(types, (str, bytes)) or not isinstance(types, Iterable):
        raise TypeError(f"types must be an iterable of media type strings, not {type(types).__name__}")
    out: List[str] = []
    for item in types:
        if not isinstance(item, str):
            raise TypeError(f"types: each media type must be a str, not {type(item).__name__}")
        pattern = item.strip().lower()
        match = _TYPE_PATTERN_RE.match(pattern)
        if not match or "*" in match.group(1):
            raise ValueError(
                f"types: {item!r} is not a media type ('type/subtype', 'type/*' or 'type/*+suffix', "
                "without parameters; the type itself cannot be '*')"
            )
        if pattern not in out:
            out.append(pattern)
    if not out:
        raise ValueError("types must name at least one media type (to turn compression off, do not call compress())")
    return tuple(out)


def _media_type(content_type: str) -> str:
    """The media type of a Content-Type value, lower case, without parameters."""
    return content_type.split(";", 1)[0].strip(" \t").lower()


def _field_lines(block: bytes) -> List[bytes]:
    """The field lines of a header block (each without its CRLF)."""
    return [line for line in block.split(b"\r\n") if line]


def request_accepts_gzip(headers: Iterable[Tuple[bytes, bytes]]) -> bool:
    """accepts_gzip over a request's (name, value) fields: repeated Accept-Encoding fields combine."""
    from ._encoding import accepts_gzip

    values = [value.decode("latin-1") for name, value in headers if name.lower() == b"accept-encoding"]
    return accepts_gzip(", ".join(values) if values else None)


class Compression:
    """The settings of ``app.compress()`` and the decisions they imply (module docstring).

    Raises TypeError/ValueError naming the bad argument.
    """

    __slots__ = ("min_size", "level", "types", "gzip")

    def __init__(self, min_size: int = DEFAULT_MIN_SIZE, level: int = DEFAULT_LEVEL,
                 types: Iterable[str] = DEFAULT_TYPES) -> None:
        if isinstance(min_size, bool) or not isinstance(min_size, int):
            raise TypeError(f"min_size must be an int (bytes), not {type(min_size).__name__}")
        if min_size < 0:
            raise ValueError(f"min_size must be >= 0, got {min_size!r}")
        if isinstance(level, bool) or not isinstance(level, int):
            raise TypeError(f"level must be an int, not {type(level).__name__}")
        if not MIN_LEVEL <= level <= MAX_LEVEL:
            raise ValueError(f"level must be from {MIN_LEVEL} (fastest) to {MAX_LEVEL} (smallest), got {level!r}")
        self.min_size = min_size
        self.level = level
        self.types = _check_types(types)
        #: body bytes -> gzip member (RFC 1952) at this level
        self.gzip: Callable[[bytes], bytes] = _make_gzip(level)

    def __repr__(self) -> str:
        return f"Compression(min_size={self.min_size}, level={self.level}, types={self.types!r})"

    def compressible_type(self, content_type: str) -> bool:
        """True when the media type of ``content_type`` matches one of ``types``."""
        media = _media_type(content_type)
        if media in _NEVER_COMPRESSED_TYPES or "/" not in media:
            return False
        major, minor = media.split("/", 1)
        for pattern in self.types:
            p_major, p_minor = pattern.split("/", 1)
            if p_major != major:
                continue
            if p_minor == minor or p_minor == "*":
                return True
            if p_minor.startswith("*+") and minor.endswith(p_minor[1:]) and len(minor) > len(p_minor) - 1:
                return True
        return False

    def header_variants(self, status: int, block: bytes, refuse_etag: bool = False) -> Optional[Tuple[bytes, bytes]]:
        """(identity block, gzip block) for a response that may be compressed, else None
        (also None with refuse_etag when the block has an ETag: see negotiate()).

        Both carry ``Vary: Accept-Encoding`` (merged into a Vary the block
        already has; left alone when that lists ``*`` or Accept-Encoding); the
        gzip block adds ``Content-Encoding: gzip``.
        """
        if status < 200 or status in _NEVER_COMPRESSED:
            return None
        content_type: Optional[str] = None
        vary_index = -1
        lines = _field_lines(block)
        for index, line in enumerate(lines):
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-encoding" or (refuse_etag and lname == b"etag"):
                return None  # the handler encoded it itself, or its validator names the identity bytes
            if lname == b"content-type" and content_type is None:
                content_type = value.decode("latin-1")
            elif lname == b"vary" and vary_index < 0:
                vary_index = index
        if content_type is None or not self.compressible_type(content_type):
            return None
        if vary_index < 0:
            identity = block + _VARY_LINE
        else:
            name, _, value = lines[vary_index].partition(b":")
            members = [m.strip(b" \t").lower() for m in value.split(b",")]
            if b"*" not in members and b"accept-encoding" not in members:
                value = value.strip(b" \t")
                lines[vary_index] = name + b": " + (value + b", " if value else b"") + b"Accept-Encoding"
            identity = b"".join(line + b"\r\n" for line in lines)
        return identity, identity + _CONTENT_ENCODING_LINE

    def negotiate(self, status: int, block: bytes, body: bytes, accepts_gzip: bool) -> Tuple[bytes, bytes]:
        """The (block, body) to send: gzip when allowed, accepted, >= min_size and smaller."""
        # refuse_etag: a strong validator names one representation; compressing on the fly
        # would give two representations one ETag (static files bake their own gzip variant).
        variants = self.header_variants(status, block, refuse_etag=True)
        if variants is None:
            return block, body
        if accepts_gzip and len(body) >= self.min_size:
            compressed = self.gzip(body)
            if len(compressed) < len(body):
                return variants[1], compressed
        return variants[0], body

    def adjust(self, finalized: Tuple[Any, ...], accepts_gzip: bool) -> Tuple[Any, ...]:
        """:meth:`negotiate` over a finalize() result (the C server's Response/tuple path).

        A file body (a 5-tuple, FileResponse and static files) is passed through:
        it is sent from its descriptor, as it is on disk."""
        if len(finalized) != 3:
            return finalized
        status, block, body = finalized
        block, body = self.negotiate(status, block, body, accepts_gzip)
        return status, block, body

    def bake(self, status: int, block: bytes, body: bytes) -> Tuple[Tuple[bytes, int, int],
                                                                    Optional[Tuple[bytes, int, int]]]:
        """A static route's baked responses (see _codegen.bake_response): the identity one
        (with Vary when compressible) and the gzip one, or None when there is no gzip
        variant (type not compressible, body under min_size, or gzip would not shrink it)."""
        from ._codegen import bake_response

        variants = self.header_variants(status, block)
        if variants is None:
            return bake_response(status, block, body), None
        identity = bake_response(status, variants[0], body)
        if len(body) >= self.min_size:
            compressed = self.gzip(body)
            if len(compressed) < len(body):
                return identity, bake_response(status, variants[1], compressed)
        return identity, None

    def native_config(self, text_block: bytes, json_block: bytes) -> Tuple[Any, ...]:
        """The ``compression`` argument of the C module's configure():
        (gzip, min_size, text identity block or None, text gzip block or None,
        json identity block or None, json gzip block or None, adjust)."""
        text = self.header_variants(200, text_block) or (None, None)
        json = self.header_variants(200, json_block) or (None, None)
        return (self.gzip, self.min_size, text[0], text[1], json[0], json[1], self.adjust)
