"""The request object that dynamic handlers receive.

The C loop builds a :class:`Request` without calling any Python code: it
allocates the object and fills its slots (method, path, query string, the raw
request head, the body, the route's parameter names and the matched values).
Everything else -- headers, query parameters, cookies, form fields, JSON, even
percent-decoding of path parameters -- is parsed from those raw pieces on first
access and cached, so a handler that reads nothing costs nothing more.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple
from urllib.parse import parse_qsl, unquote

__all__ = ["Request", "BadRequest", "MultiDict", "Headers"]


class BadRequest(ValueError):
    """The request is malformed in a way the handler detected (bad JSON,
    undecodable form). Uncaught in a handler, the server answers 400."""


class MultiDict(Mapping[str, str]):
    """A read-only mapping that keeps repeated keys: ``m[k]`` is the first
    value, :meth:`getall` returns every value in order."""

    __slots__ = ("_items", "_first")

    def __init__(self, items: List[Tuple[str, str]]) -> None:
        self._items = items
        first: Dict[str, str] = {}
        for key, value in items:
            first.setdefault(key, value)
        self._first = first

    def __getitem__(self, key: str) -> str:
        return self._first[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def getall(self, key: str) -> List[str]:
        """Every value of ``key`` in the order sent (empty list when absent)."""
        return [v for k, v in self._items if k == key]

    def items_all(self) -> List[Tuple[str, str]]:
        """All (key, value) pairs in the order sent, repeats included."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


class Headers(Mapping[str, str]):
    """Request header fields, case-insensitive. ``h[name]`` joins repeated
    fields with ``", "`` (RFC 9110 5.3; ``Cookie`` fields with ``"; "``);
    :meth:`getall` returns each field's value separately, in order."""

    __slots__ = ("_items", "_joined")

    def __init__(self, items: List[Tuple[str, str]]) -> None:
        self._items = items  # (name as sent, value)
        joined: Dict[str, str] = {}
        for name, value in items:
            key = name.lower()
            if key in joined:
                sep = "; " if key == "cookie" else ", "
                joined[key] = joined[key] + sep + value
            else:
                joined[key] = value
        self._joined = joined

    def __getitem__(self, name: str) -> str:
        return self._joined[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._joined

    def __iter__(self) -> Iterator[str]:
        return iter(self._joined)

    def __len__(self) -> int:
        return len(self._joined)

    def getall(self, name: str) -> List[str]:
        """Every value of field ``name`` (case-insensitive), in the order sent."""
        key = name.lower()
        return [v for n, v in self._items if n.lower() == key]

    def items_all(self) -> List[Tuple[str, str]]:
        """All (name as sent, value) pairs in order, repeats included."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def _parse_head(head: bytes) -> List[Tuple[str, str]]:
    # The C parser has validated the head (RFC 9112: CRLF line endings, token
    # names directly followed by ':', no obs-fold), so a plain split is exact.
    lines = head.decode("latin-1").split("\r\n")
    out: List[Tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        out.append((name, value.strip(" \t")))
    return out


def _parse_cookies(header_values: List[str]) -> Dict[str, str]:
    cookies: Dict[str, str] = {}
    for field in header_values:
        for pair in field.split(";"):
            name, eq, value = pair.strip().partition("=")
            if not eq or not name:
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            cookies.setdefault(name.strip(), value)
    return cookies


def _parse_urlencoded(text: str) -> List[Tuple[str, str]]:
    return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace")


class Request:
    """One HTTP request, as seen by a dynamic handler.

    Attributes: ``method`` (str), ``path`` (str, as sent, still
    percent-encoded), ``query_string`` (str, without ``?``; "" when absent),
    ``body`` (bytes). Accessors: :meth:`param`, :meth:`query_param`,
    :meth:`header`, :meth:`cookie`, :meth:`json`, :meth:`form`; mappings
    :attr:`params`, :attr:`query`, :attr:`headers`, :attr:`cookies`.
    """

    # The C loop fills the first seven slots directly (hs_servermod.c looks the
    # slot offsets up once); the next five are caches it sets to None. The C
    # leaves the last two unset (read through getattr with a default): hooks
    # set them.
    __slots__ = (
        "method", "path", "query_string", "body", "_head", "_param_names", "_param_values",
        "_headers", "_query", "_cookies", "_params", "_form",
        "_request_id", "_state",
    )

    _request_id: Optional[str]  # set by RequestId.before (hypersonic.middleware)

    def __init__(
        self,
        method: str,
        path: str,
        query_string: str = "",
        head: bytes = b"",
        body: bytes = b"",
        param_names: Tuple[str, ...] = (),
        param_values: Tuple[str, ...] = (),
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.body = body
        self._head = head
        self._param_names = param_names
        self._param_values = param_values
        self._headers: Optional[Headers] = None
        self._query: Optional[MultiDict] = None
        self._cookies: Optional[Dict[str, str]] = None
        self._params: Optional[Dict[str, str]] = None
        self._form: Optional[MultiDict] = None

    # -- middleware ------------------------------------------------------
    @property
    def request_id(self) -> Optional[str]:
        """This request's id when ``app.request_id()`` is on, else None."""
        return getattr(self, "_request_id", None)

    @property
    def state(self) -> Dict[str, Any]:
        """A dict for hooks to hand data to the handler (e.g. the authenticated user)."""
        try:
            return self._state
        except AttributeError:
            self._state: Dict[str, Any] = {}
            return self._state

    # -- path parameters -------------------------------------------------
    @property
    def params(self) -> Dict[str, str]:
        """Path parameters by name (``/users/:id`` -> ``{"id": ...}``), percent-decoded."""
        if self._params is None:
            names = self._param_names or ()
            values = self._param_values or ()
            self._params = {n: (unquote(v) if "%" in v else v) for n, v in zip(names, values)}
        return self._params

    def param(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The path parameter ``name`` (percent-decoded), or ``default``."""
        names = self._param_names
        if names:
            for i, known in enumerate(names):
                if known == name:
                    value = self._param_values[i]
                    return unquote(value) if "%" in value else value
        return default

    # -- query string ----------------------------------------------------
    @property
    def query(self) -> MultiDict:
        """Query parameters (``+`` and ``%XX`` decoded, empty values kept)."""
        if self._query is None:
            self._query = MultiDict(_parse_urlencoded(self.query_string) if self.query_string else [])
        return self._query

    def query_param(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The first value of query parameter ``name``, or ``default``."""
        return self.query.get(name, default)

    # -- headers and cookies ---------------------------------------------
    @property
    def headers(self) -> Headers:
        """The header fields (case-insensitive; repeated fields kept)."""
        if self._headers is None:
            self._headers = Headers(_parse_head(self._head) if self._head else [])
        return self._headers

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """Field ``name`` (case-insensitive); repeated fields joined with ", "."""
        return self.headers.get(name, default)

    @property
    def cookies(self) -> Dict[str, str]:
        """Cookies from the ``Cookie`` field(s); the first of a repeated name wins."""
        if self._cookies is None:
            self._cookies = _parse_cookies(self.headers.getall("cookie"))
        return self._cookies

    def cookie(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The cookie ``name``, or ``default``."""
        return self.cookies.get(name, default)

    # -- body --------------------------------------------------------------
    def json(self) -> Any:
        """The body parsed as JSON. Raises :class:`BadRequest` (400 if uncaught)
        when it is not valid UTF-8 JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from exc

    def form(self) -> MultiDict:
        """The body parsed as ``application/x-www-form-urlencoded`` (``+`` and
        ``%XX`` decoded, empty values kept). Raises :class:`BadRequest` for a
        multipart body (not supported)."""
        if self._form is None:
            ctype = self.header("content-type", "") or ""
            if ctype.lower().startswith("multipart/"):
                raise BadRequest("multipart/form-data bodies are not supported; use urlencoded forms")
            self._form = MultiDict(_parse_urlencoded(self.body.decode("utf-8", "replace")) if self.body else [])
        return self._form

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}{'?' + self.query_string if self.query_string else ''}>"
