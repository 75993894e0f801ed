"""Before/after hooks around handlers, and the helpers built on them.

Theory of operation. ``compile()`` wraps every route that has hooks into one
Python callable (:func:`chain`), so the C loop still makes exactly one Python
call per request; routes without hooks are untouched (a static route stays
baked in C and runs no Python at all).

For one request the chain runs:

1. the before-hooks, global ones first, then the route's own, each in
   registration order. A hook receives the :class:`~hypersonic.request.Request`
   and returns ``None`` to continue or any handler result (str, bytes, dict,
   list, :class:`~hypersonic.response.Response`, ``(status, headers, body)``)
   to answer with it: the remaining before-hooks and the handler are skipped;
2. the handler (a static route's handler ran once at ``compile()``: each
   request gets a fresh copy of that response);
3. the after-hooks, the route's own first, then the global ones, each in
   registration order. A hook receives the request and the
   :class:`~hypersonic.response.Response` and may change it in place or return
   a replacement. After-hooks also see short-circuit answers and the 400/500
   answers of a hook or handler that raised, so headers such as
   ``X-Request-ID`` and CORS reach error responses too.

An exception in a before-hook or the handler is answered 500 (400 for
:class:`~hypersonic.request.BadRequest`) and logged, as for any handler; one
raised by an after-hook is answered 500 by the server without running the
remaining after-hooks. ``KeyboardInterrupt``/``SystemExit`` are not caught.

Helpers: :class:`RequestId`, :class:`Cors` and :func:`ready_response`; the
app methods ``request_id()``, ``cors()``, ``health_check()`` and
``ready_check()`` install them.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union

from ._status import reason_phrase, status_has_no_body
from .request import BadRequest, Request
from .response import (FileResponse, OpenFileResponse, PreparedResponse, Response, _body_bytes, _normalize_headers,
                       check_header_list, coerce)

__all__ = ["BeforeHook", "AfterHook", "hook_tuple", "chain", "chain_streaming", "RequestId", "Cors", "add_vary"]

log = logging.getLogger("hypersonic")

#: ``before(req) -> None | result``
BeforeHook = Callable[[Request], Any]
#: ``after(req, response) -> None | result``
AfterHook = Callable[[Request, Response], Any]
#: ``(exc, status, method, target) -> None``: the app's error logger.
ErrorLogger = Callable[[BaseException, int, str, str], None]


def hook_tuple(name: str, hooks: Union[None, Callable[..., Any], Iterable[Callable[..., Any]]]) -> Tuple[Callable[..., Any], ...]:
    """Validate a ``before=``/``after=`` argument: None, one callable, or an
    iterable of callables. Raises TypeError naming ``name``."""
    if hooks is None:
        return ()
    if callable(hooks):
        return (hooks,)
    if isinstance(hooks, (str, bytes)):
        raise TypeError(f"{name} must be a callable or a list of callables, not {type(hooks).__name__}")
    try:
        items = tuple(hooks)
    except TypeError:
        raise TypeError(f"{name} must be a callable or a list of callables, not {type(hooks).__name__}") from None
    for i, hook in enumerate(items):
        if not callable(hook):
            raise TypeError(f"{name}[{i}] must be callable, not {type(hook).__name__}")
    return items


def _target(req: Request) -> str:
    return req.path + ("?" + req.query_string if req.query_string else "")


def _error_response(exc: Exception, req: Request, on_error: ErrorLogger) -> Response:
    status = 400 if isinstance(exc, BadRequest) else 500
    try:
        on_error(exc, status, req.method, _target(req))
    except Exception:  # noqa: BLE001 - a failing logger must not change the answer
        log.exception("error logger failed")
    return Response(reason_phrase(status), status=status)


def chain(
    handler: Optional[Callable[..., Any]],
    takes_request: bool,
    before: Sequence[BeforeHook],
    after: Sequence[AfterHook],
    on_error: ErrorLogger,
    baked: Optional[Response] = None,
) -> Callable[[Request], Any]:
    """One callable ``f(req)`` running ``before``, the handler (or a copy of
    ``baked``, a static route's response) and ``after`` as the module
    docstring describes."""
    befores = tuple(before)
    afters = tuple(after)

    def run(req: Request) -> Any:
        try:
            result = None
            for hook in befores:
                result = hook(req)
                if result is not None:
                    break
            if result is None:
                if baked is not None:
                    result = baked.copy()
                else:
                    assert handler is not None
                    result = handler(req) if takes_request else handler()
            response = _hookable(result)
        except Exception as exc:  # noqa: BLE001 - answered 400/500 like a handler's error
            response = _error_response(exc, req, on_error)
        for after_hook in afters:
            replaced = after_hook(req, response)
            if replaced is not None:
                response = _hookable(replaced)
        if isinstance(response, _PreparedHeaders):
            return response.finish()
        if afters:
            check_header_list(response.headers)  # what hooks appended: no CR/LF smuggled into the head
        return response

    run.__qualname__ = f"hooks({getattr(handler, '__qualname__', 'static response')})"
    return run


class _PreparedHeaders:
    """What after-hooks see of a static-file answer (its header block is already
    serialised): ``status`` and a ``headers`` list of fields to add, which
    :meth:`finish` appends to the block. There is no ``body`` to change."""

    __slots__ = ("status", "headers", "content_type", "_result")

    def __init__(self, result: Union[PreparedResponse, OpenFileResponse]) -> None:
        self._result = result
        self.status = result.status
        self.headers: List[Tuple[str, str]] = []
        self.content_type: Optional[str] = None

    def finish(self) -> Union[PreparedResponse, OpenFileResponse]:
        """The original answer with the added fields in its block."""
        if not self.headers:
            return self._result
        extra = "".join(f"{n}: {v}\r\n" for n, v in _normalize_headers(self.headers)).encode("latin-1")
        result = self._result
        if isinstance(result, PreparedResponse):  # shared by every request for a baked file: copy
            return PreparedResponse(result.status, result.block + extra, result.body)
        result.block += extra  # an open file: made for this request
        return result


def _hookable(result: Any) -> Any:
    """The object after-hooks get for a result: a Response (any handler result),
    the FileResponse itself (headers changeable, no body) or, for an internal
    static-file answer, a :class:`_PreparedHeaders`."""
    if isinstance(result, (Response, FileResponse)):
        return result
    if isinstance(result, (PreparedResponse, OpenFileResponse)):
        return _PreparedHeaders(result)
    return coerce(result)


def chain_streaming(handler: Callable[..., Any], before: Sequence[BeforeHook],
                    on_error: ErrorLogger) -> Callable[[Request, Any], None]:
    """A streaming handler ``f(req, stream)`` that runs ``before`` first; a
    hook's answer is written through the stream instead of calling
    ``handler``. An exception in a hook propagates (the stream then answers
    500, or 400 for BadRequest, as for the handler itself). After-hooks do not
    apply to streamed responses: there is no complete response to give them."""
    befores = tuple(before)

    def run(req: Request, stream: Any) -> None:
        for hook in befores:
            result = hook(req)
            if result is not None:
                response = coerce(result)
                body, implied = _body_bytes(response.body)
                content_type = response.content_type if response.content_type is not None else implied
                headers = list(response.headers)
                if not status_has_no_body(response.status):
                    headers.append(("Content-Length", str(len(body))))
                stream.headers(response.status, headers, content_type=content_type)
                if body:
                    stream.write(body)
                stream.end()
                return
        handler(req, stream)

    run.__qualname__ = f"hooks({getattr(handler, '__qualname__', 'stream')})"
    return run


# -- header helpers ------------------------------------------------------------------

def _header_index(response: Response, name: str) -> int:
    lname = name.lower()
    for i, (n, _) in enumerate(response.headers):
        if n.lower() == lname:
            return i
    return -1


def set_header(response: Response, name: str, value: str) -> None:
    """Set ``name`` on ``response``, replacing every field of that name."""
    lname = name.lower()
    headers = response.headers
    for n, _ in headers:
        if n.lower() == lname:
            response.headers = headers = [(n, v) for n, v in headers if n.lower() != lname]
            break
    headers.append((name, value))


def add_vary(response: Response, *fields: str) -> None:
    """Add field names to ``response``'s ``Vary`` (merged, no duplicates; ``*`` absorbs all)."""
    i = _header_index(response, "vary")
    current = [t.strip() for t in response.headers[i][1].split(",") if t.strip()] if i >= 0 else []
    if "*" in current:
        return
    known = {t.lower() for t in current}
    for field in fields:
        if field.lower() not in known:
            current.append(field)
            known.add(field.lower())
    set_header(response, "Vary", ", ".join(current))


# -- request id ------------------------------------------------------------------------

#: What a client-sent request id may look like to be kept: 1-128 visible
#: characters from a conservative set (no spaces, quotes or separators that
#: could confuse a log parser).
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._~:+/=@-]{1,128}\Z")


def _random_id() -> str:
    return os.urandom(16).hex()


class RequestId:
    """Give every request an id: the client's ``X-Request-ID`` when it is
    valid (:data:`VALID_REQUEST_ID`), else a new random one (32 hex digits,
    or ``generator()``). The id is ``req.request_id`` in handlers and hooks
    and is echoed in the response's header."""

    def __init__(self, header: str = "X-Request-ID", generator: Optional[Callable[[], str]] = None) -> None:
        if not isinstance(header, str) or not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", header):
            raise ValueError(f"header must be an HTTP field name, got {header!r}")
        if generator is not None and not callable(generator):
            raise TypeError(f"generator must be callable, not {type(generator).__name__}")
        self.header = header
        self.generator = generator or _random_id

    def before(self, req: Request) -> None:
        """Assign ``req.request_id``."""
        sent = req.header(self.header)
        if sent is not None and VALID_REQUEST_ID.match(sent):
            req._request_id = sent
        else:
            generated = self.generator()
            if not isinstance(generated, str) or not VALID_REQUEST_ID.match(generated):
                raise ValueError(f"request id generator returned {generated!r}, not a valid id")
            req._request_id = generated

    def after(self, req: Request, response: Response) -> None:
        """Echo the id in the response."""
        rid = req.request_id
        if rid is not None:
            set_header(response, self.header, rid)


# -- CORS --------------------------------------------------------------------------------

#: Request headers allowed in a preflight by default (besides the CORS-safelisted ones).
DEFAULT_CORS_HEADERS = ("Accept", "Accept-Language", "Content-Language", "Content-Type", "Authorization",
                        "X-Requested-With", "X-Request-ID")
DEFAULT_CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_ORIGIN_RE = re.compile(r"(?:[a-z][a-z0-9+.\-]*://[^/\s]+|null)\Z", re.IGNORECASE)
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


def _tokens(name: str, values: Union[str, Iterable[str]], *, upper: bool = False) -> Tuple[str, ...]:
    if isinstance(values, str):
        values = [v for v in values.split(",")]
    try:
        items = [v.strip() for v in values]
    except (TypeError, AttributeError):
        raise TypeError(f"{name} must be a list of str") from None
    for item in items:
        if not isinstance(item, str) or not _TOKEN_RE.match(item):
            raise ValueError(f"{name}: {item!r} is not an HTTP token")
    return tuple(i.upper() if upper else i for i in items)


class Cors:
    """Cross-Origin Resource Sharing (the Fetch standard's CORS protocol).

    origins: ``"*"`` (any origin), a list of exact origins
        (``"https://app.example.com"``), or a callable ``f(origin) -> bool``.
    methods: methods a preflight may ask for.
    headers: request headers a preflight may ask for, or ``"*"`` to allow any.
    expose_headers: response headers scripts may read.
    credentials: send ``Access-Control-Allow-Credentials: true``; the allowed
        origin is then echoed instead of ``*`` (the standard forbids ``*``
        with credentials).
    max_age: seconds a browser may cache a preflight answer.

    A preflight (``OPTIONS`` with ``Origin`` and
    ``Access-Control-Request-Method``) is answered 204 with the allow headers,
    or 403 when the origin, method or a header is not allowed. Other requests
    from an allowed origin get ``Access-Control-Allow-Origin`` (and
    ``Vary: Origin`` unless it is ``*``); from other origins, nothing is added.
    """

    def __init__(
        self,
        origins: Union[str, Iterable[str], Callable[[str], bool]] = "*",
        methods: Union[str, Iterable[str]] = DEFAULT_CORS_METHODS,
        headers: Union[str, Iterable[str]] = DEFAULT_CORS_HEADERS,
        expose_headers: Union[str, Iterable[str]] = (),
        credentials: bool = False,
        max_age: int = 600,
    ) -> None:
        self._origin_check: Optional[Callable[[str], bool]] = None
        self.any_origin = False
        self.origins: Tuple[str, ...] = ()
        if origins == "*":
            self.any_origin = True
        elif callable(origins):
            self._origin_check = origins
        elif isinstance(origins, str):
            raise ValueError(f"origins must be '*', a list of origins or a callable, got {origins!r}")
        else:
            try:
                listed = tuple(origins)
            except TypeError:
                raise TypeError(f"origins must be '*', a list of str or a callable, not {type(origins).__name__}") from None
            for origin in listed:
                if not isinstance(origin, str) or not _ORIGIN_RE.match(origin) or origin.endswith("/"):
                    raise ValueError(f"origins: {origin!r} is not an origin like 'https://example.com'")
            self.origins = tuple(o.lower() for o in listed)
        self.methods = _tokens("methods", methods, upper=True)
        self.any_header = headers == "*"
        self.headers = () if self.any_header else _tokens("headers", headers)
        self._header_set = {h.lower() for h in self.headers}
        self.expose_headers = _tokens("expose_headers", expose_headers)
        if not isinstance(credentials, bool):
            raise TypeError(f"credentials must be a bool, not {type(credentials).__name__}")
        self.credentials = credentials
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0:
            raise ValueError(f"max_age must be an int >= 0 (seconds), got {max_age!r}")
        self.max_age = max_age

    # -- decisions --
    def allowed(self, origin: str) -> bool:
        """True when ``origin`` may read responses."""
        if self.any_origin:
            return True
        if self._origin_check is not None:
            return bool(self._origin_check(origin))
        return origin.lower() in self.origins

    @property
    def constant_headers(self) -> Optional[List[Tuple[str, str]]]:
        """The headers every allowed response gets when they do not depend on
        the request (any origin, no credentials), else None. compile() bakes
        these into static routes so they stay in C."""
        if not self.any_origin or self.credentials:
            return None
        headers = [("Access-Control-Allow-Origin", "*")]
        if self.expose_headers:
            headers.append(("Access-Control-Expose-Headers", ", ".join(self.expose_headers)))
        return headers

    def _allow_origin_value(self, origin: str) -> str:
        return "*" if self.any_origin and not self.credentials else origin

    def _origin_headers(self, response: Response, origin: str) -> None:
        value = self._allow_origin_value(origin)
        set_header(response, "Access-Control-Allow-Origin", value)
        if self.credentials:
            set_header(response, "Access-Control-Allow-Credentials", "true")
        if value != "*":
            add_vary(response, "Origin")

    # -- hooks --
    def before(self, req: Request) -> Optional[Response]:
        """Answer preflight requests."""
        if req.method != "OPTIONS":
            return None
        origin = req.header("origin")
        requested = req.header("access-control-request-method")
        if origin is None or requested is None:
            return None  # a plain OPTIONS request: the route answers it
        requested = requested.strip()
        if not self.allowed(origin):
            return Response("CORS: origin not allowed", status=403)
        if requested.upper() not in self.methods:
            return Response(f"CORS: method {requested} not allowed", status=403)
        asked = [h.strip() for h in (req.header("access-control-request-headers") or "").split(",") if h.strip()]
        if not self.any_header:
            refused = [h for h in asked if h.lower() not in self._header_set]
            if refused:
                return Response(f"CORS: header {refused[0]} not allowed", status=403)
        response = Response(None, status=204)
        self._origin_headers(response, origin)
        set_header(response, "Access-Control-Allow-Methods", ", ".join(self.methods))
        if asked:
            set_header(response, "Access-Control-Allow-Headers", ", ".join(asked))
        set_header(response, "Access-Control-Max-Age", str(self.max_age))
        add_vary(response, "Access-Control-Request-Method", "Access-Control-Request-Headers")
        return response

    def after(self, req: Request, response: Response) -> None:
        """Mark responses to allowed origins readable."""
        origin = req.header("origin")
        if req.method == "OPTIONS" and origin is not None and req.header("access-control-request-method"):
            return  # a preflight: before() answered it, allowed or refused
        if origin is None:
            if not self.any_origin or self.credentials:
                add_vary(response, "Origin")  # a cache must not reuse this for a cross-origin request
            return
        if _header_index(response, "access-control-allow-origin") >= 0:
            return  # the preflight answer, or set by the handler
        if not self.allowed(origin):
            add_vary(response, "Origin")
            return
        self._origin_headers(response, origin)
        if self.expose_headers:
            set_header(response, "Access-Control-Expose-Headers", ", ".join(self.expose_headers))
