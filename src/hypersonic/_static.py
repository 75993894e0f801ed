"""Static files: the handler behind ``Hypersonic.static(prefix, directory, ...)``.

Theory of operation. A mount is one wildcard route (``hs_node.wild_child`` in
the C router, ``_Node.wild`` in the Python server): every path at or below the
prefix that no route of the app matches comes here, GET and HEAD only. At
``compile()`` (:meth:`StaticMount.prepare`) the directory tree is walked once
and every regular file up to :data:`BAKE_MAX_FILE` bytes (within
:data:`BAKE_MAX_TOTAL` in all) is read into memory with its response header
blocks built, and, with ``gzip=True``, its gzip variant (a fresh ``.gz``
sibling, or compressed now when that shrinks a compressible type). Such a
request costs no system call: a dict lookup, the conditional and range
checks, and a :class:`~hypersonic.response.PreparedResponse`; once a second at
most, one ``stat`` checks that the file did not change (size and mtime): a
changed or removed file is dropped from memory and served from disk from then on.
Every other file (larger, created after compile, or behind a symlinked
directory) is looked up on disk per request and sent from its descriptor as
an :class:`~hypersonic.response.OpenFileResponse` (sendfile in the C loop).

Path rules (:meth:`StaticMount._resolve`): the path is percent-decoded exactly
once; NUL is 400; backslash, ``.``/``..`` segments and (unless ``dotfiles``)
segments starting with ``.`` are 404; repeated slashes are merged; the real
path (symlinks resolved) must lie inside the real root, else 404. A directory
without a trailing slash is 301 to the slash form; with it, ``index`` is
served, or 404 (no listings).

HTTP (RFC 9110): strong ETag ``"<size>-<mtime_ns>"`` in hex (``-gz`` added for
the gzip variant), Last-Modified, Cache-Control, Accept-Ranges, Vary:
Accept-Encoding when a gzip variant exists. If-None-Match (weak comparison)
takes precedence over If-Modified-Since (13.2.2); a match is 304. Range
applies to the identity representation (a request with Range is never
answered gzipped): one ``bytes=`` range gives 206, an unsatisfiable one 416
with ``Content-Range: bytes */len``, several ranges the whole 200 (14.2 lets a
server ignore Range); If-Range that does not match also gives the whole 200.
"""

from __future__ import annotations

import calendar
import gzip as gzip_module
import os
import re
import stat
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import quote

from ._encoding import accepts_gzip
from ._httpdate import http_date
from .request import BadRequest, Request
from .response import TEXT_PLAIN, OpenFileResponse, PreparedResponse, guess_type

__all__ = ["StaticMount", "BAKE_MAX_FILE", "BAKE_MAX_TOTAL", "GZIP_MIN_SIZE"]

#: Largest file read into memory at compile() (bytes); larger files are streamed per request.
BAKE_MAX_FILE = 64 * 1024
#: Most bytes (files plus gzip variants) one mount reads into memory at compile().
BAKE_MAX_TOTAL = 32 * 1024 * 1024
#: Smallest file compressed at compile() (smaller ones rarely shrink enough to matter).
GZIP_MIN_SIZE = 256
#: zlib level of compile-time compression (done once, so the best ratio).
GZIP_LEVEL = 9

# Types compressed at compile time (besides text/*).
_COMPRESSIBLE = frozenset({
    "application/javascript", "application/json", "application/xml", "application/wasm",
    "image/svg+xml", "application/manifest+json", "application/x-javascript", "text/javascript",
})
# Non-text types that are text (get "; charset=utf-8").
_TEXTUAL = frozenset({"application/javascript", "application/json", "application/xml", "image/svg+xml",
                      "application/manifest+json"})
_OCTET = "application/octet-stream"
# Web types missing from older Pythons' tables (3.8-3.11), so every version answers alike.
_WEB_TYPES = {
    ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".otf": "font/otf",
    ".avif": "image/avif", ".webp": "image/webp", ".md": "text/markdown", ".mjs": "text/javascript",
    ".js": "text/javascript", ".webmanifest": "application/manifest+json", ".wasm": "application/wasm",
}
_O_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
_PERCENT_RE = re.compile(rb"%([0-9A-Fa-f]{2})")
_BAD_PERCENT_RE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_RANGE_RE = re.compile(r"^bytes[ \t]*=[ \t]*(\d*)[ \t]*-[ \t]*(\d*)[ \t]*$", re.IGNORECASE)
_MONTHS = {m: i + 1 for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))}
_IMF_RE = re.compile(r"^[A-Za-z]{3}, (\d{2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$")
_RFC850_RE = re.compile(r"^[A-Za-z]+, (\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$")
_ASCTIME_RE = re.compile(r"^[A-Za-z]{3} ([A-Za-z]{3}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4})$")


def content_type_for(name: str) -> str:
    """The Content-Type of a file name from the standard library's table (no system files).

    Text types get ``; charset=utf-8``; ``.gz`` files are ``application/gzip``;
    unknown is ``application/octet-stream``.
    """
    mime, encoding = guess_type(name)
    if encoding is None:
        mime = _WEB_TYPES.get(os.path.splitext(name)[1].lower(), mime)
    if encoding == "gzip":
        return "application/gzip"
    if encoding is not None or mime is None:
        return _OCTET
    if mime.startswith("text/") or mime in _TEXTUAL:
        return mime + "; charset=utf-8"
    return mime


def _compressible(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0]
    return mime.startswith("text/") or mime in _COMPRESSIBLE


def parse_http_date(value: str) -> Optional[int]:
    """Seconds since the epoch of an HTTP-date (IMF-fixdate, RFC 850 or asctime), or None."""
    value = value.strip()
    m = _IMF_RE.match(value)
    if m:
        day, mon, year, hh, mm, ss = m.groups()
    else:
        m = _RFC850_RE.match(value)
        if m:
            day, mon, yy, hh, mm, ss = m.groups()
            year = str(1900 + int(yy) if int(yy) >= 70 else 2000 + int(yy))
        else:
            m = _ASCTIME_RE.match(value)
            if not m:
                return None
            mon, day, hh, mm, ss, year = m.groups()
    month = _MONTHS.get(mon)
    if month is None:
        return None
    try:
        return calendar.timegm((int(year), month, int(day), int(hh), int(mm), int(ss), 0, 0, 0))
    except (ValueError, OverflowError):
        return None


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match: ``*`` or a list of entity-tags, compared weakly (RFC 9110 8.8.3.2)."""
    header = header.strip()
    if header == "*":
        return True
    opaque = etag[2:] if etag.startswith("W/") else etag
    for member in header.split(","):
        member = member.strip()
        if member.startswith("W/"):
            member = member[2:]
        if member == opaque:
            return True
    return False


def parse_range(header: str, length: int) -> Union[None, str, Tuple[int, int]]:
    """One ``bytes=`` range against a representation of ``length`` bytes (RFC 9110 14.1.2).

    Returns (first, last) inclusive; "unsatisfiable"; or None when the field is
    to be ignored (malformed, another unit, or several ranges: answered 200).
    """
    if "," in header:
        return None
    m = _RANGE_RE.match(header.strip())
    if not m:
        return None
    first_text, last_text = m.groups()
    if not first_text:
        if not last_text:
            return None
        suffix = int(last_text)
        if suffix == 0 or length == 0:
            return "unsatisfiable"
        return max(0, length - suffix), length - 1
    first = int(first_text)
    last = int(last_text) if last_text else length - 1
    if last_text and last < first:
        return None  # invalid range-spec: the field is ignored
    if first >= length:
        return "unsatisfiable"
    return first, min(last, length - 1)


class _Rep:
    """One representation of a file (identity or gzip): validators, header blocks, bytes if baked."""

    __slots__ = ("etag", "size", "block200", "block304", "data", "encoded")

    def __init__(self, etag: str, size: int, block200: bytes, block304: bytes, data: Optional[bytes],
                 encoded: bool) -> None:
        self.etag = etag
        self.size = size
        self.block200 = block200
        self.block304 = block304
        self.data = data
        self.encoded = encoded


class _Entry:
    """A file's representations (gzip None when there is none) and its modification second.

    Baked entries also keep what was read (path, size, mtime_ns), the keys they are stored under,
    and the monotonic second they were last checked against the disk.
    """

    __slots__ = ("identity", "gzip", "mtime", "path", "size", "mtime_ns", "keys", "checked")

    def __init__(self, identity: _Rep, gzip: Optional[_Rep], mtime: int) -> None:
        self.identity = identity
        self.gzip = gzip
        self.mtime = mtime
        self.path = ""
        self.size = 0
        self.mtime_ns = 0
        self.keys: List[str] = []
        self.checked = -1


class StaticMount:
    """Serve ``directory`` under ``prefix`` (see :meth:`hypersonic.Hypersonic.static` and the module docstring)."""

    def __init__(self, prefix: str, directory: str, *, max_age: Optional[int], index: Optional[str], etag: bool,
                 gzip: bool, dotfiles: bool) -> None:
        self.prefix = prefix  # normalised: "" for the root, else "/a/b" (no trailing slash)
        self.directory = directory
        self.max_age = max_age
        self.index = index
        self.etag = etag
        self.gzip = gzip
        self.dotfiles = dotfiles
        self._root = ""
        self._security = b""
        self._baked: Dict[str, _Entry] = {}
        self._cache_control = "no-cache" if max_age is None else f"public, max-age={max_age}"

    # -- compile time -----------------------------------------------------------

    def prepare(self, security_headers: Sequence[Tuple[str, str]]) -> None:
        """Resolve the root and bake the small files (called by compile()).

        Raises ValueError when the directory does not exist or is not a directory.
        """
        root = os.path.realpath(self.directory)
        if not os.path.isdir(root):
            raise ValueError(f"static directory {self.directory!r} does not exist or is not a directory")
        self._root = root
        self._security = "".join(f"{n}: {v}\r\n" for n, v in security_headers).encode("latin-1")
        self._baked = {}
        budget = BAKE_MAX_TOTAL
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            rel_segments = [] if rel_dir == "." else rel_dir.split(os.sep)
            dirnames[:] = sorted(d for d in dirnames if self._segment_ok(d))
            for name in sorted(filenames):
                if budget <= 0:
                    return
                if not self._segment_ok(name):
                    continue
                budget -= self._bake(rel_segments + [name], budget)

    def _bake(self, segments: List[str], budget: int) -> int:
        """Read one file into memory if it is small and inside the root; the bytes used."""
        path = os.path.join(self._root, *segments)
        real = os.path.realpath(path)
        if not self._inside(real):
            return 0
        try:
            info = os.stat(real)
            if not stat.S_ISREG(info.st_mode) or info.st_size > min(BAKE_MAX_FILE, budget):
                return 0
            with open(real, "rb") as f:
                data = f.read(BAKE_MAX_FILE + 1)
        except OSError:
            return 0
        if len(data) != info.st_size:
            return 0  # changing while read: serve it from disk
        content_type = content_type_for(segments[-1])
        gz_data: Optional[bytes] = None
        gz_tag = ""
        if self.gzip and content_type != "application/gzip":
            sibling = self._fresh_sibling(real, info)
            if sibling is not None and sibling[1].st_size <= BAKE_MAX_FILE:
                try:
                    with open(sibling[0], "rb") as f:
                        gz_data = f.read(BAKE_MAX_FILE + 1)
                except OSError:
                    gz_data = None
                gz_tag = self._etag_of(sibling[1], "-gz")
            elif _compressible(content_type) and len(data) >= GZIP_MIN_SIZE:
                packed = gzip_module.compress(data, GZIP_LEVEL, mtime=0)
                if len(packed) < len(data):
                    gz_data = packed
                    gz_tag = self._etag_of(info, "-gz")
        entry = self._entry(content_type, info, data, gz_data, gz_tag)
        entry.path, entry.size, entry.mtime_ns = path, info.st_size, info.st_mtime_ns
        entry.checked = int(time.monotonic())
        key = "/" + "/".join(segments)
        entry.keys.append(key)
        if self.index is not None and segments[-1] == self.index:
            entry.keys.append(key[: -len(self.index)])  # "/dir/" (the mount root: "/")
        for alias in entry.keys:
            self._baked[alias] = entry
        return len(data) + (len(gz_data) if gz_data else 0)

    # -- building responses ------------------------------------------------------

    @staticmethod
    def _etag_of(info: os.stat_result, suffix: str = "") -> str:
        return f'"{info.st_size:x}-{info.st_mtime_ns:x}{suffix}"'

    def _rep(self, content_type: str, info: os.stat_result, etag: str, size: int, data: Optional[bytes],
             encoded: bool, vary: bool) -> _Rep:
        validators = f"Cache-Control: {self._cache_control}\r\n"
        if self.etag:
            validators += f"ETag: {etag}\r\n"
        validators += f"Last-Modified: {http_date(info.st_mtime)}\r\n"
        if vary:
            validators += "Vary: Accept-Encoding\r\n"
        head = f"Content-Type: {content_type}\r\n".encode("latin-1") + self._security
        fields = validators + "Accept-Ranges: bytes\r\n"
        if encoded:
            fields += "Content-Encoding: gzip\r\n"
        return _Rep(etag, size, head + fields.encode("latin-1"), self._security + validators.encode("latin-1"),
                    data, encoded)

    def _entry(self, content_type: str, info: os.stat_result, data: Optional[bytes], gz_data: Optional[bytes],
               gz_tag: str, gz_size: int = 0) -> _Entry:
        has_gzip = bool(gz_tag)
        identity = self._rep(content_type, info, self._etag_of(info), info.st_size, data, False, has_gzip)
        variant = None
        if has_gzip:
            size = len(gz_data) if gz_data is not None else gz_size
            variant = self._rep(content_type, info, gz_tag, size, gz_data, True, True)
        return _Entry(identity, variant, int(info.st_mtime))

    def _simple(self, status: int, body: bytes, extra: str = "") -> PreparedResponse:
        block = f"Content-Type: {TEXT_PLAIN}\r\n".encode("latin-1") + self._security + extra.encode("latin-1")
        return PreparedResponse(status, block, body)

    def _not_found(self) -> PreparedResponse:
        return self._simple(404, b"Not Found")

    # -- per request ---------------------------------------------------------------

    def _segment_ok(self, segment: str) -> bool:
        return (segment not in ("", ".", "..") and "\\" not in segment and "\x00" not in segment
                and (self.dotfiles or not segment.startswith(".")))

    def _inside(self, real: str) -> bool:
        return real == self._root or real.startswith(self._root.rstrip(os.sep) + os.sep)

    def _fresh_sibling(self, real: str, info: os.stat_result) -> Optional[Tuple[str, os.stat_result]]:
        """The ``.gz`` sibling of a file when it is a regular file (not a symlink) not older than the file."""
        try:
            gz_info = os.lstat(real + ".gz")
        except OSError:
            return None
        if not stat.S_ISREG(gz_info.st_mode) or gz_info.st_mtime_ns < info.st_mtime_ns:
            return None
        return real + ".gz", gz_info

    def _current(self, entry: _Entry) -> bool:
        """True when a baked entry still describes its file. Checked at most once a second
        (one stat): a file changed or removed since is dropped and served from disk from now on."""
        now = int(time.monotonic())
        if entry.checked == now:
            return True
        try:
            info = os.stat(entry.path)
        except OSError:
            info = None
        if info is None or info.st_mtime_ns != entry.mtime_ns or info.st_size != entry.size:
            for alias in entry.keys:
                self._baked.pop(alias, None)
            return False
        entry.checked = now
        return True

    def __call__(self, req: Request) -> object:
        rest = req.path[len(self.prefix):]
        entry = self._baked.get(rest) if "%" not in rest else None
        if entry is not None and self._current(entry):
            return self._respond(req, entry, None)
        if not rest:
            return self._redirect(req, [])
        raw = rest.encode("latin-1")
        if _BAD_PERCENT_RE.search(raw):
            raise BadRequest("malformed percent-encoding in the path")
        decoded = _PERCENT_RE.sub(lambda m: bytes((int(m.group(1), 16),)), raw)
        if b"\x00" in decoded:
            raise BadRequest("NUL in the path")
        text = os.fsdecode(decoded)
        segments = [s for s in text.split("/") if s]
        if not all(self._segment_ok(s) for s in segments):
            return self._not_found()
        trailing = text.endswith("/")
        key = "/" + "/".join(segments) + ("/" if trailing and segments else "")
        entry = self._baked.get(key)
        if entry is not None and self._current(entry):
            return self._respond(req, entry, None)
        return self._from_disk(req, segments, trailing)

    def _redirect(self, req: Request, segments: List[str]) -> PreparedResponse:
        location = self.prefix + "".join("/" + quote(s, safe="!$&'()*+,;=:@~") for s in segments) + "/"
        if req.query_string:
            location += "?" + req.query_string
        return self._simple(301, b"Moved Permanently", f"Location: {location}\r\n")

    def _from_disk(self, req: Request, segments: List[str], trailing: bool) -> object:
        real = os.path.realpath(os.path.join(self._root, *segments))
        if not self._inside(real):
            return self._not_found()
        try:
            info = os.stat(real)
        except OSError:
            return self._not_found()
        if stat.S_ISDIR(info.st_mode):
            if not trailing:
                return self._redirect(req, segments)
            if self.index is None:
                return self._not_found()
            real = os.path.realpath(os.path.join(real, self.index))
            if not self._inside(real):
                return self._not_found()
            name = self.index
        elif trailing:
            return self._not_found()  # "file/" (as nginx: ENOTDIR)
        else:
            name = segments[-1]
        try:
            fd = os.open(real, _O_FLAGS)
        except OSError:
            return self._not_found()
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)
                return self._not_found()
            content_type = content_type_for(name)
            sibling = None
            if self.gzip and content_type != "application/gzip":
                sibling = self._fresh_sibling(real, info)
            gz_tag = self._etag_of(sibling[1], "-gz") if sibling else ""
            entry = self._entry(content_type, info, None, None, gz_tag, sibling[1].st_size if sibling else 0)
            return self._respond(req, entry, (fd, real))
        except BaseException:
            os.close(fd)
            raise

    def _respond(self, req: Request, entry: _Entry, disk: Optional[Tuple[int, str]]) -> object:
        """Choose the representation, answer conditionals and ranges. disk: (open fd, real path) or None
        (baked); the fd is handed to the response or closed here."""
        headers = req.headers
        range_header = headers.get("range") if req.method == "GET" else None
        rep = entry.identity
        if entry.gzip is not None and range_header is None and accepts_gzip(headers.get("accept-encoding")):
            rep = entry.gzip
        status = 200
        first, length = 0, rep.size
        block = rep.block200
        inm = headers.get("if-none-match")
        if inm is not None:
            not_modified = self.etag and etag_matches(inm, rep.etag)
        else:
            ims = headers.get("if-modified-since")
            since = parse_http_date(ims) if ims is not None else None
            not_modified = since is not None and entry.mtime <= since
        if not_modified:
            status, block, length = 304, rep.block304, 0
        elif range_header is not None and self._if_range_ok(headers.get("if-range"), rep, entry):
            chosen = parse_range(range_header, rep.size)
            if chosen == "unsatisfiable":
                status, length = 416, 0
                block = (f"Content-Type: {TEXT_PLAIN}\r\n".encode("latin-1") + self._security
                         + f"Content-Range: bytes */{rep.size}\r\n".encode("latin-1"))
            elif chosen is not None:
                assert isinstance(chosen, tuple)
                first, last = chosen
                status, length = 206, last - first + 1
                block = rep.block200 + f"Content-Range: bytes {first}-{last}/{rep.size}\r\n".encode("latin-1")
        if disk is None:
            data = rep.data
            assert data is not None
            if status == 416:
                return PreparedResponse(416, block, b"Range Not Satisfiable")
            return PreparedResponse(status, block, data if status == 200 else data[first:first + length])
        fd, real = disk
        if status == 416:
            os.close(fd)
            return PreparedResponse(416, block, b"Range Not Satisfiable")
        if status == 304 or req.method == "HEAD":
            os.close(fd)
            return OpenFileResponse(status, block, -1, 0, length)
        if rep.encoded:  # the fresh .gz sibling instead of the file
            try:
                gz_fd = os.open(real + ".gz", _O_FLAGS)
            except OSError:
                os.close(fd)
                return self._not_found()
            os.close(fd)
            fd = gz_fd
        return OpenFileResponse(status, block, fd, first, length)

    def _if_range_ok(self, if_range: Optional[str], rep: _Rep, entry: _Entry) -> bool:
        """RFC 9110 13.1.5: without If-Range, or when it matches (strong ETag, or the exact Last-Modified)."""
        if if_range is None:
            return True
        if_range = if_range.strip()
        if if_range.startswith('"'):
            return self.etag and if_range == rep.etag
        if if_range.startswith("W/"):
            return False
        since = parse_http_date(if_range)
        return since is not None and since == entry.mtime
