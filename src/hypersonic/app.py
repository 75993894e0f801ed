"""The Hypersonic application: route registration, compile(), run().

A route whose handler takes no parameter is *static*: ``compile()`` calls it
once and bakes its whole HTTP response into generated C, so serving it never
touches Python. A handler that takes the request (or any handler registered
with ``dynamic=True``) is *dynamic*: the C loop calls it per request.

>>> app = Hypersonic()
>>> @app.get("/health")
... def health():
...     return "OK"
>>> app.post("/echo", lambda req: req.body)  # doctest: +ELLIPSIS
<function <lambda> at ...>
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, TypeVar, Union, cast

from . import _accesslog, _codegen
from ._codegen import METHODS, RouteSpec
from ._compress import DEFAULT_LEVEL, DEFAULT_MIN_SIZE, DEFAULT_TYPES, Compression
from .middleware import AfterHook, BeforeHook, Cors, RequestId, chain, chain_streaming, hook_tuple
from .request import BadRequest, Request
from .response import (APPLICATION_JSON, TEXT_PLAIN, FileResponse, Response, _normalize_headers, coerce, finalize,
                       json_chunks)

if TYPE_CHECKING:  # pragma: no cover
    from ._static import StaticMount

__all__ = ["Hypersonic", "DEFAULT_SECURITY_HEADERS", "DEFAULT_MAX_REQUEST_SIZE"]

log = logging.getLogger("hypersonic")

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)

#: Security headers sent on every response unless disabled or overridden
#: (HSTS is not among them: it is only meaningful over TLS).
DEFAULT_SECURITY_HEADERS: Tuple[Tuple[str, str], ...] = (
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-XSS-Protection", "1; mode=block"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
)

#: Default limit on a request body (Content-Length or decoded chunked), bytes.
DEFAULT_MAX_REQUEST_SIZE = 1024 * 1024

# Most ":name" parameters in one route (HS_MAX_PARAMS in hs_router.h).
_MAX_PARAMS = 16
# RFC 3986 pchar plus "/": what a route pattern may contain.
_PATH_RE = re.compile(r"^/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$")
_PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class _Route:
    method: str
    path: str
    segments: Tuple[str, ...]
    param_names: Tuple[str, ...]
    handler: Handler
    takes_request: bool
    dynamic: bool
    before: Tuple[BeforeHook, ...] = ()
    after: Tuple[AfterHook, ...] = ()
    global_hooks: bool = True  # False: app.before()/after() hooks skip this route (health/ready probes)
    streaming: bool = False
    wildcard: bool = False  # a prefix mount (app.static): matches every path below `segments`


@dataclass
class _GlobalHook:
    hook: Callable[..., Any]
    include_static: bool


Hooks = Union[None, Callable[..., Any], List[Callable[..., Any]], Tuple[Callable[..., Any], ...]]


def _positive_number(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return value


def _check_streaming_handler(handler: Handler) -> None:
    """A streaming handler is called as handler(req, stream): it must accept two positional arguments."""
    try:
        sig = inspect.signature(handler)
    except (TypeError, ValueError):
        return  # not introspectable: trust it
    try:
        sig.bind(None, None)
    except TypeError:
        raise TypeError(f"streaming handler {handler!r} must take (req, stream)") from None


def _takes_request(handler: Handler) -> bool:
    """True when the handler takes one positional parameter (the request), False for none.

    Raises TypeError when it requires more than one.
    """
    try:
        sig = inspect.signature(handler)
    except (TypeError, ValueError):
        return True  # no introspectable signature (some builtins): assume it wants the request
    positional = [
        p for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    required = [p for p in positional if p.default is p.empty]
    var_positional = any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values())
    required_kw = [p for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    if required_kw:
        raise TypeError(f"handler {handler!r} has required keyword-only parameters; it is called with at most the request")
    if len(required) > 1:
        raise TypeError(
            f"handler {handler!r} requires {len(required)} parameters; a handler takes none (static) or one (the request)"
        )
    return len(required) == 1 or (not required and var_positional)


class Hypersonic:
    """An HTTP/1.1 application whose serving loop is C compiled at run time.

    Besides routes: :meth:`before`/:meth:`after` hooks, :meth:`request_id`,
    :meth:`cors`, :meth:`health_check`, :meth:`ready_check`
    (docs/MIDDLEWARE.md); :meth:`static` file mounts (docs/STATIC.md);
    :meth:`compress` (docs/COMPRESSION.md); ``streaming=True`` routes with
    :class:`hypersonic.Stream` and :class:`hypersonic.SSE` (docs/STREAMING.md).

    Parameters (all keyword; defaults in brackets):

    cache_dir [None]: where compiled modules are cached; None means
        ``$HYPERSONIC_CACHE_DIR``, else ``./_hypersonic_cache``, else the user
        cache dir.
    max_connections [10000]: open connections per worker; beyond it new clients
        wait in the kernel's listen backlog.
    max_request_size [1 MiB]: largest request body in bytes; larger is 413.
    keepalive_timeout [30]: seconds an idle keep-alive connection is kept.
    recv_timeout [30]: seconds a request head may take to arrive (and a body
        may go without progress) before 408 and close.
    drain_timeout [5]: seconds a stopping worker waits for in-flight requests.
    enable_security_headers [True]: send :data:`DEFAULT_SECURITY_HEADERS`.
    security_headers [None]: a mapping merged over the defaults; a value of
        None removes that header. Headers named here are sent even when
        enable_security_headers is False.
    access_log [None]: None/False: no access log; True or "-": standard
        output; a path: appended to (each worker opens it with O_APPEND, so
        workers share one file). One line per response, static and error
        responses included, written by the C loop and flushed at least once a
        second and when a worker stops.
    access_log_format ["common"]: "common", "combined" or a format string of
        nginx-style variables ($remote_addr, $request, $status,
        $request_time_us, $request_id, $http_user_agent, ...; see
        hypersonic._accesslog). A bad variable raises ValueError naming it.

    Timeouts are checked once a second, so they act within about a second.
    """

    def __init__(
        self,
        cache_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
        max_connections: int = 10000,
        max_request_size: int = DEFAULT_MAX_REQUEST_SIZE,
        keepalive_timeout: float = 30,
        recv_timeout: float = 30,
        drain_timeout: float = 5,
        enable_security_headers: bool = True,
        security_headers: Optional[Mapping[str, Optional[str]]] = None,
        access_log: Union[None, bool, str, "os.PathLike[str]"] = None,
        access_log_format: str = "common",
    ) -> None:
        if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
            raise TypeError(f"cache_dir must be a path (str or os.PathLike), not {type(cache_dir).__name__}")
        self.cache_dir = cache_dir
        self.max_connections = _positive_int("max_connections", max_connections)
        self.max_request_size = _positive_int("max_request_size", max_request_size)
        self.keepalive_timeout = _positive_number("keepalive_timeout", keepalive_timeout)
        self.recv_timeout = _positive_number("recv_timeout", recv_timeout)
        self.drain_timeout = _positive_number("drain_timeout", drain_timeout, allow_zero=True)
        if not isinstance(enable_security_headers, bool):
            raise TypeError("enable_security_headers must be a bool")
        self.enable_security_headers = enable_security_headers
        self.security_headers: List[Tuple[str, str]] = self._merge_security_headers(
            enable_security_headers, security_headers
        )
        _accesslog.resolve_destination(access_log)  # raises for a bad value
        _accesslog.compile_format(access_log_format)
        self.access_log = access_log
        self.access_log_format = access_log_format
        self._routes: Dict[Tuple[str, Tuple[str, ...]], _Route] = {}
        self._before: List[_GlobalHook] = []
        self._after: List[_GlobalHook] = []
        self._cors: Optional[Cors] = None
        self._request_id: Optional[RequestId] = None
        self._draining = False
        self._compiled_counts: Optional[Tuple[int, int]] = None
        self._module: Optional[ModuleType] = None
        self._configuration: Dict[str, Any] = {}
        self._compression: Optional[Compression] = None

    @staticmethod
    def _merge_security_headers(
        enabled: bool, overrides: Optional[Mapping[str, Optional[str]]]
    ) -> List[Tuple[str, str]]:
        if overrides is not None and not isinstance(overrides, Mapping):
            raise TypeError(
                f"security_headers must be a mapping of name -> value (None removes), not {type(overrides).__name__}"
            )
        merged: Dict[str, Tuple[str, Optional[str]]] = {}
        if enabled:
            for name, value in DEFAULT_SECURITY_HEADERS:
                merged[name.lower()] = (name, value)
        for name, override in (overrides or {}).items():
            if override is not None and not isinstance(override, str):
                raise TypeError(f"security_headers[{name!r}] must be a str or None, not {type(override).__name__}")
            merged[str(name).lower()] = (name, override)
        pairs = [(n, v) for n, v in merged.values() if v is not None]
        try:
            return _normalize_headers(pairs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"security_headers: {exc}") from None

    # -- registration ----------------------------------------------------------
    def route(self, method: str, path: str, handler: Optional[H] = None, *, dynamic: bool = False,
              before: Hooks = None, after: Hooks = None, streaming: bool = False) -> Any:
        """Register ``handler`` for ``method`` and ``path``; without handler, return a decorator.

        streaming=True: the handler is called as ``handler(req, stream)`` in its
        own thread and writes the response through ``stream``
        (:class:`hypersonic.stream.Stream`, docs/STREAMING.md). Before-hooks
        run first (in that thread); after-hooks do not run for a streamed response.

        before/after: hooks of this route only (a callable or a list), run
        after the global before-hooks and before the global after-hooks; see
        :meth:`before` and hypersonic.middleware.

        Raises ValueError (bad or duplicate path, unknown method), TypeError
        (handler not callable, or with an unusable signature) and RuntimeError
        (after compile()).
        """
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        method = method.upper()
        if self._module is not None:
            raise RuntimeError("routes cannot be added after compile()")
        if not isinstance(dynamic, bool):
            raise TypeError(f"dynamic must be a bool, not {type(dynamic).__name__}")
        if not isinstance(streaming, bool):
            raise TypeError(f"streaming must be a bool, not {type(streaming).__name__}")
        hooks = (hook_tuple("before", before), hook_tuple("after", after))
        segments, names = self._parse_path(path)
        if handler is None:
            def decorator(fn: H) -> H:
                self._add(method, path, segments, names, fn, dynamic, hooks, streaming=streaming)
                return fn
            return decorator
        self._add(method, path, segments, names, handler, dynamic, hooks, streaming=streaming)
        return handler

    @staticmethod
    def _parse_path(path: Any) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
        if not isinstance(path, str):
            raise TypeError(f"path must be a str, not {type(path).__name__}")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        if not _PATH_RE.match(path):
            raise ValueError(
                f"path {path!r} contains characters not allowed in a URL path (RFC 3986); percent-encode them"
            )
        segments = tuple(path.split("/")[1:])
        names: List[str] = []
        for seg in segments:
            if seg.startswith(":"):
                name = seg[1:]
                if not _PARAM_NAME_RE.match(name):
                    raise ValueError(f"path {path!r}: parameter {seg!r} must be ':' followed by an identifier")
                if name in names:
                    raise ValueError(f"path {path!r}: parameter name {name!r} is used twice")
                names.append(name)
            elif ":" in seg:
                raise ValueError(f"path {path!r}: ':' may only start a parameter segment (got {seg!r})")
        if len(names) > _MAX_PARAMS:
            raise ValueError(f"path {path!r} has {len(names)} parameters; at most {_MAX_PARAMS}")
        return segments, tuple(names)

    def _add(self, method: str, path: str, segments: Tuple[str, ...], names: Tuple[str, ...],
             handler: Any, dynamic: bool, hooks: Tuple[Tuple[Any, ...], Tuple[Any, ...]] = ((), ()),
             global_hooks: bool = True, streaming: bool = False) -> _Route:
        if not callable(handler):
            raise TypeError(f"handler for {method} {path} must be callable, not {type(handler).__name__}")
        if streaming:
            _check_streaming_handler(handler)
        takes_request = True if streaming else _takes_request(handler)
        shape = tuple(":" if s.startswith(":") else s for s in segments)
        key = (method, shape)
        if key in self._routes:
            other = self._routes[key]
            raise ValueError(f"duplicate route: {method} {path} (already registered as {method} {other.path})")
        if names and not takes_request:
            raise TypeError(
                f"handler for {method} {path} takes no request but the path has parameters {names}; "
                "give it a 'req' parameter"
            )
        route = _Route(method, path, segments, names, handler, takes_request, dynamic or takes_request,
                       hooks[0], hooks[1], global_hooks, streaming)
        self._routes[key] = route
        return route

    def static(self, prefix: str, directory: Union[str, "os.PathLike[str]"], *, max_age: Optional[int] = None,
               index: Optional[str] = "index.html", etag: bool = True, gzip: bool = True,
               dotfiles: bool = False) -> None:
        """Serve the files under ``directory`` at every path below ``prefix`` (GET and HEAD).

        max_age: seconds for ``Cache-Control: public, max-age=N``; None sends
        ``Cache-Control: no-cache`` (always revalidate, answered 304 cheaply).
        index: file served for a directory requested with a trailing slash
        (None: directories are 404; there are no listings).
        etag: send ETag and honour If-None-Match/If-Range with it.
        gzip: serve a fresh ``name.gz`` sibling, or a compile-time gzip of a
        small compressible file, to clients that accept gzip.
        dotfiles: serve names starting with "." (default: 404).
        Routes registered on the app win over the mount. Small files are read
        at compile(); see docs/STATIC.md. Raises TypeError/ValueError naming the
        bad argument; a missing directory raises ValueError at compile().
        """
        if self._module is not None:
            raise RuntimeError("routes cannot be added after compile()")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"directory must be a path (str or os.PathLike), not {type(directory).__name__}")
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int)):
            raise TypeError(f"max_age must be an int number of seconds or None, not {type(max_age).__name__}")
        if max_age is not None and max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age!r}")
        if index is not None and (not isinstance(index, str) or not index or "/" in index or index in (".", "..")):
            raise ValueError(f"index must be a file name (no '/') or None, got {index!r}")
        for name, flag in (("etag", etag), ("gzip", gzip), ("dotfiles", dotfiles)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, not {type(flag).__name__}")
        normalized = prefix.rstrip("/")
        segments, names = self._parse_path(normalized or "/")
        if names:
            raise ValueError(f"prefix {prefix!r}: a static mount cannot have ':' parameters")
        segments = segments if normalized else ()
        if "" in segments:
            raise ValueError(f"prefix {prefix!r} has an empty segment")
        key = ("GET", segments + ("/",))  # "/" is never a segment: the mount's own key
        if key in self._routes:
            raise ValueError(f"duplicate static mount at {prefix!r}")
        from ._static import StaticMount  # not imported by apps without mounts (worker memory)

        mount = StaticMount(normalized, os.fspath(directory), max_age=max_age, index=index, etag=etag, gzip=gzip,
                            dotfiles=dotfiles)
        self._routes[key] = _Route("GET", normalized or "/", segments, (), mount, True, True, wildcard=True)

    def get(self, path: str, handler: Optional[H] = None, *, dynamic: bool = False, before: Hooks = None,
            after: Hooks = None, streaming: bool = False) -> Any:
        """Register a GET route (also answers HEAD); usable as a decorator."""
        return self.route("GET", path, handler, dynamic=dynamic, before=before, after=after,
                          streaming=streaming)

    def post(self, path: str, handler: Optional[H] = None, *, dynamic: bool = False, before: Hooks = None,
            after: Hooks = None, streaming: bool = False) -> Any:
        """Register a POST route; usable as a decorator."""
        return self.route("POST", path, handler, dynamic=dynamic, before=before, after=after,
                          streaming=streaming)

    def put(self, path: str, handler: Optional[H] = None, *, dynamic: bool = False, before: Hooks = None,
            after: Hooks = None, streaming: bool = False) -> Any:
        """Register a PUT route; usable as a decorator."""
        return self.route("PUT", path, handler, dynamic=dynamic, before=before, after=after,
                          streaming=streaming)

    def delete(self, path: str, handler: Optional[H] = None, *, dynamic: bool = False, before: Hooks = None,
            after: Hooks = None, streaming: bool = False) -> Any:
        """Register a DELETE route; usable as a decorator."""
        return self.route("DELETE", path, handler, dynamic=dynamic, before=before, after=after,
                          streaming=streaming)

    def patch(self, path: str, handler: Optional[H] = None, *, dynamic: bool = False, before: Hooks = None,
            after: Hooks = None, streaming: bool = False) -> Any:
        """Register a PATCH route; usable as a decorator."""
        return self.route("PATCH", path, handler, dynamic=dynamic, before=before, after=after,
                          streaming=streaming)

    def head(self, path: str, handler: Optional[H] = None, *, dynamic: bool = False, before: Hooks = None,
            after: Hooks = None, streaming: bool = False) -> Any:
        """Register a HEAD route (overrides the automatic HEAD of a GET route)."""
        return self.route("HEAD", path, handler, dynamic=dynamic, before=before, after=after,
                          streaming=streaming)

    def options(self, path: str, handler: Optional[H] = None, *, dynamic: bool = False, before: Hooks = None,
            after: Hooks = None, streaming: bool = False) -> Any:
        """Register an OPTIONS route (overrides the automatic Allow answer)."""
        return self.route("OPTIONS", path, handler, dynamic=dynamic, before=before, after=after,
                          streaming=streaming)

    # -- middleware -------------------------------------------------------------
    def _global_hook(self, where: List[_GlobalHook], name: str, fn: Any, include_static: bool) -> Any:
        if self._module is not None:
            raise RuntimeError(f"{name}() hooks cannot be added after compile()")
        if not isinstance(include_static, bool):
            raise TypeError(f"include_static must be a bool, not {type(include_static).__name__}")

        def register(hook: Any) -> Any:
            if not callable(hook):
                raise TypeError(f"{name}() hook must be callable, not {type(hook).__name__}")
            where.append(_GlobalHook(hook, include_static))
            return hook

        return register if fn is None else register(fn)

    def before(self, fn: Optional[BeforeHook] = None, *, include_static: bool = True) -> Any:
        """Run ``fn(req)`` before the handler of every route; usable as a decorator.

        ``fn`` returns None to go on, or a handler result (str, bytes, dict,
        list, Response, (status, headers, body)) that answers the request
        instead of the handler. Hooks run in registration order, global ones
        before a route's own ``before=``. include_static=False leaves static
        routes out (they stay baked in C); with True, a static route gets a
        Python call per request to run the hook, its handler's result still
        computed once at compile(). See hypersonic.middleware.
        """
        return self._global_hook(self._before, "before", fn, include_static)

    def after(self, fn: Optional[AfterHook] = None, *, include_static: bool = True) -> Any:
        """Run ``fn(req, response)`` after the handler of every route; usable as a decorator.

        ``response`` is a :class:`Response` (the handler's result, a
        before-hook's answer, or the 400/500 answer of a failure); ``fn`` may
        change it in place or return a replacement. Route ``after=`` hooks run
        first, then the global ones, each in registration order.
        include_static as for :meth:`before`.
        """
        return self._global_hook(self._after, "after", fn, include_static)

    def request_id(self, header: str = "X-Request-ID", *, generator: Optional[Callable[[], str]] = None,
                   include_static: bool = True) -> None:
        """Give each request an id (``req.request_id``), echoed in the response.

        A valid id sent by the client in ``header`` is kept (1-128 of
        ``A-Z a-z 0-9 . _ ~ : + / = @ -``); otherwise a random one (32 hex
        digits) or ``generator()`` is used. Installed as a global before- and
        after-hook at this point of the registration order: call it before
        registering hooks that read ``req.request_id``.
        """
        if self._request_id is not None:
            raise RuntimeError("request_id() was already called for this app")
        rid = RequestId(header, generator)
        self._request_id = rid
        self.before(rid.before, include_static=include_static)
        self.after(rid.after, include_static=include_static)

    def cors(self, origins: Any = "*", *, methods: Any = None, headers: Any = None, expose_headers: Any = (),
             credentials: bool = False, max_age: int = 600) -> None:
        """Answer CORS preflights and mark responses readable cross-origin.

        See :class:`hypersonic.middleware.Cors` for the arguments (methods and
        headers default to the common methods and request headers). Every path
        with routes answers preflight ``OPTIONS`` requests. With ``origins="*"``
        and no credentials the headers do not depend on the request and are
        baked into static routes; otherwise static routes run the CORS hook in
        Python per request.
        """
        if self._cors is not None:
            raise RuntimeError("cors() was already called for this app")
        if self._module is not None:
            raise RuntimeError("cors() cannot be called after compile()")
        kwargs: Dict[str, Any] = dict(expose_headers=expose_headers, credentials=credentials, max_age=max_age)
        if methods is not None:
            kwargs["methods"] = methods
        if headers is not None:
            kwargs["headers"] = headers
        cors = Cors(origins, **kwargs)
        self._cors = cors
        constant = cors.constant_headers is not None
        # Constant headers are baked into static routes at compile(); the hooks then skip them.
        self.before(cors.before, include_static=not constant)
        self.after(cors.after, include_static=not constant)

    def health_check(self, path: str = "/health", body: str = "OK") -> None:
        """A liveness probe: ``GET path`` answers 200 with ``body``, baked in C.

        Global hooks do not apply to it (a load balancer's probe carries no
        credentials), so it stays static whatever middleware the app has.
        """
        if not isinstance(body, str):
            raise TypeError(f"body must be a str, not {type(body).__name__}")
        segments, names = self._parse_path(path)
        if names:
            raise ValueError(f"health_check path must not have parameters, got {path!r}")
        if self._module is not None:
            raise RuntimeError("routes cannot be added after compile()")
        self._add("GET", path, segments, names, lambda: Response(body, headers={"Cache-Control": "no-store"}),
                  False, global_hooks=False)

    def ready_check(self, path: str = "/ready",
                    checks: Union[None, Mapping[str, Callable[[], Any]], List[Callable[[], Any]]] = None) -> None:
        """A readiness probe: ``GET path`` runs ``checks`` per request.

        checks: a mapping of name -> callable, or a list of callables (named
        after their ``__name__``). A check fails when it raises or returns
        False. 200 ``{"status": "ready", "checks": {...}}`` when all pass;
        503 with the failing checks' messages otherwise, and 503
        ``{"status": "draining"}`` once the worker is stopping, so a load
        balancer moves traffic away before the connection closes. Global
        hooks do not apply to it.
        """
        named: List[Tuple[str, Callable[[], Any]]] = []
        if checks is None:
            pass
        elif isinstance(checks, Mapping):
            for name, check in checks.items():
                if not isinstance(name, str) or not callable(check):
                    raise TypeError(f"checks[{name!r}] must map a str to a callable")
                named.append((name, check))
        elif isinstance(checks, (list, tuple)):
            for i, check in enumerate(checks):
                if not callable(check):
                    raise TypeError(f"checks[{i}] must be callable, not {type(check).__name__}")
                named.append((getattr(check, "__name__", f"check{i}"), check))
        else:
            raise TypeError(f"checks must be a mapping of name -> callable or a list of callables, "
                            f"not {type(checks).__name__}")
        segments, names = self._parse_path(path)
        if names:
            raise ValueError(f"ready_check path must not have parameters, got {path!r}")
        if self._module is not None:
            raise RuntimeError("routes cannot be added after compile()")
        no_store = {"Cache-Control": "no-store"}

        def ready(req: Request) -> Response:
            if self._draining:
                return Response({"status": "draining"}, status=503, headers=no_store)
            results: Dict[str, str] = {}
            ok = True
            for name, check in named:
                try:
                    passed = check() is not False
                    detail = "ok" if passed else "failed"
                except Exception as exc:  # noqa: BLE001 - a failing check is the answer, not an error
                    passed, detail = False, f"failed: {type(exc).__name__}: {exc}"
                    log.warning("ready check %s failed: %s", name, detail)
                ok = ok and passed
                results[name] = detail
            return Response({"status": "ready" if ok else "unavailable", "checks": results},
                            status=200 if ok else 503, headers=no_store)

        self._add("GET", path, segments, names, ready, True, global_hooks=False)

    def compress(self, min_size: int = DEFAULT_MIN_SIZE, level: int = DEFAULT_LEVEL,
                 types: Iterable[str] = DEFAULT_TYPES) -> None:
        """Gzip responses for clients whose Accept-Encoding allows it (docs/COMPRESSION.md).

        min_size: bodies shorter than this many bytes are sent as they are.
        level: zlib level, 1 (fastest) to 9 (smallest).
        types: media types to compress ("text/html", "text/*",
            "application/*+json"); matched on the Content-Type without parameters.
        Every response of a compressible type gets ``Vary: Accept-Encoding``.
        Static routes get their gzip variant baked at compile(). Calling it
        again replaces the settings. Raises TypeError/ValueError naming a bad
        argument, RuntimeError after compile().
        """
        if self._module is not None:
            raise RuntimeError("compress() must be called before compile()")
        self._compression = Compression(min_size=min_size, level=level, types=types)

    # -- compile ----------------------------------------------------------------
    @property
    def compiled(self) -> bool:
        """True once compile() succeeded."""
        return self._module is not None

    def route_counts(self) -> Tuple[int, int]:
        """(static routes, dynamic routes); after compile(), as served: a static
        route with hooks counts as dynamic (it runs Python per request)."""
        if self._compiled_counts is not None:
            return self._compiled_counts
        dyn = sum(1 for r in self._routes.values() if r.dynamic)
        return len(self._routes) - dyn, dyn

    def _security_block(self) -> bytes:
        return "".join(f"{n}: {v}\r\n" for n, v in self.security_headers).encode("latin-1")

    def compile(self) -> None:
        """Run the static handlers, generate the app's C and build (or load) it.

        Raises RuntimeError (no routes, or called twice), ValueError/TypeError
        (a static handler returned None or an unsupported value),
        hypersonic.jit.CompilerNotFound (only with HYPERSONIC_JIT=1: otherwise
        the app falls back to the pure-Python server with a warning) /
        CompileError.
        """
        if self._module is not None:
            raise RuntimeError("compile() was already called for this app")
        if not self._routes:
            raise RuntimeError("compile() needs at least one route; register one with app.get(path, handler)")
        specs: List[RouteSpec] = []
        handlers: List[Handler] = []
        takes: List[bool] = []
        names: List[Tuple[str, ...]] = []
        streaming: List[bool] = []
        dynamic_count = 0
        fast_mounts: List[Tuple["StaticMount", int]] = []  # mounts without hooks: baked files answered in C
        for route in list(self._routes.values()) + self._cors_option_routes():
            before, after = self._hooks_for(route)
            static = not route.dynamic
            spec = RouteSpec(method=route.method, pattern=route.path, segments=route.segments,
                             static=static and not (before or after), wildcard=route.wildcard)
            mount = _as_mount(route.handler)
            if mount is not None:
                mount.prepare(self.security_headers)
            result: Any = None
            if static:
                result = self._static_result(route)
            if spec.static:
                try:
                    status, block, body = finalize(result, self.security_headers)
                except (TypeError, ValueError) as exc:
                    raise type(exc)(f"static handler for {route.method} {route.path}: {exc}") from None
                if self._compression is None:
                    spec.baked, spec.baked_head_len, spec.baked_date_off = _codegen.bake_response(status, block, body)
                else:  # identity (+ Vary) and, when worth it, a gzip variant
                    identity, spec.gzip_variant = self._compression.bake(status, block, body)
                    spec.baked, spec.baked_head_len, spec.baked_date_off = identity
            else:
                dynamic_count += 1
                spec.handler_index = len(handlers)
                streaming.append(route.streaming)
                if route.streaming:
                    handlers.append(chain_streaming(route.handler, before, self._on_handler_error) if before
                                    else route.handler)
                    takes.append(True)
                elif before or after:
                    handlers.append(chain(None if static else route.handler, route.takes_request, before, after,
                                          self._on_handler_error, baked=result))
                    takes.append(True)
                else:
                    handlers.append(route.handler)
                    takes.append(route.takes_request)
                    if mount is not None:
                        spec.mount_fast = True
                        fast_mounts.append((mount, spec.handler_index))
                names.append(route.param_names)
            specs.append(spec)
        self._compiled_counts = (len(specs) - dynamic_count, dynamic_count)
        access_log = _accesslog.resolve_destination(self.access_log)
        access_log_ops = _accesslog.compile_format(
            self.access_log_format, self._request_id.header if self._request_id else "X-Request-ID")
        security_block = self._security_block()
        source = _codegen.generate(specs, security_block, TEXT_PLAIN, APPLICATION_JSON)
        from ._pyserver import load_server_module

        # Native (built or prebuilt), else the pure-Python server (HYPERSONIC_JIT, docs/OPERATIONS.md).
        module = load_server_module(specs, source, security_block, TEXT_PLAIN, APPLICATION_JSON,
                                    cache_dir=self.cache_dir, defines=_backend_defines())
        self._configuration = dict(
            handlers=tuple(handlers), takes_request=tuple(takes), param_names=tuple(names),
            request_type=Request, bad_request=BadRequest, json_encode=json_chunks, finalize=self._finalize,
            on_error=self._on_handler_error, max_connections=self.max_connections,
            max_body=self.max_request_size, keepalive_ms=int(self.keepalive_timeout * 1000),
            recv_ms=int(self.recv_timeout * 1000), drain_ms=int(self.drain_timeout * 1000),
            access_log=access_log, access_log_ops=access_log_ops,
            compression=None if self._compression is None else self._compression.native_config(
                f"Content-Type: {TEXT_PLAIN}\r\n".encode("latin-1") + security_block,
                f"Content-Type: {APPLICATION_JSON}\r\n".encode("latin-1") + security_block),
        )
        if fast_mounts:
            from . import _filefast

            self._configuration["static_files"] = _filefast.native_entries(
                fast_mounts, self.security_headers, self._compression)
        if any(streaming):
            from .stream import StreamStarter

            self._configuration.update(
                streaming=tuple(streaming),
                start_stream=StreamStarter(module, handlers, self.security_headers, self._on_handler_error,
                                           BadRequest))
        if access_log is not None and not hasattr(module, "access_log_stats"):
            log.warning("access_log is not written by the pure-Python fallback server; install a C compiler")
        module.configure(**self._configuration)
        self._module = module

    def _hooks_for(self, route: _Route) -> Tuple[Tuple[BeforeHook, ...], Tuple[AfterHook, ...]]:
        """The before- and after-hooks that apply to ``route``, in running order."""
        if not route.global_hooks:
            return route.before, route.after
        static = not route.dynamic
        before = tuple(h.hook for h in self._before if h.include_static or not static) + route.before
        after = route.after + tuple(h.hook for h in self._after if h.include_static or not static)
        return before, after

    def _static_result(self, route: _Route) -> Response:
        """Run a static handler once (compile()) and return its result as a Response."""
        result = route.handler()
        if result is None:
            raise ValueError(
                f"static handler for {route.method} {route.path} returned None; return str, bytes, dict, "
                "list, Response or (status, headers, body)"
            )
        if isinstance(result, FileResponse):
            raise TypeError(f"static handler for {route.method} {route.path} returned a FileResponse; "
                            "register it with dynamic=True (files are streamed per request)")
        try:
            response = coerce(result)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"static handler for {route.method} {route.path}: {exc}") from None
        constant = self._cors.constant_headers if self._cors is not None and route.global_hooks else None
        if constant:
            present = {n.lower() for n, _ in response.headers}
            response = response.copy()
            response.headers.extend((n, v) for n, v in constant if n.lower() not in present)
        return response

    def _cors_option_routes(self) -> List[_Route]:
        """With cors(): an OPTIONS route for every path that has routes but no OPTIONS
        route of its own, so preflights reach the CORS hook (plain OPTIONS requests get
        the same 204 + Allow the server gives without CORS)."""
        if self._cors is None:
            return []
        shapes: Dict[Tuple[str, ...], List[_Route]] = {}
        for (method, shape), route in self._routes.items():
            shapes.setdefault(shape, []).append(route)
        extra: List[_Route] = []
        for shape, routes in shapes.items():
            if any(r.method == "OPTIONS" for r in routes):
                continue
            allow = _codegen.allow_value(sorted(METHODS.index(r.method) for r in routes))
            first = routes[0]

            def plain_options(allow: str = allow) -> Response:
                return Response(None, status=204, headers={"Allow": allow})

            extra.append(_Route("OPTIONS", first.path, first.segments, first.param_names, plain_options,
                                False, True, global_hooks=all(r.global_hooks for r in routes),
                                wildcard=first.wildcard))
        return extra

    def _finalize(self, result: Any) -> Tuple[int, bytes, bytes]:
        return finalize(result, self.security_headers)

    @staticmethod
    def _on_handler_error(exc: BaseException, status: int, method: str, target: str) -> None:
        if status == 400:
            log.info("%s %s: 400 Bad Request: %s", method, target, exc)
        else:
            log.error("%s %s: handler failed, answered %d", method, target, status, exc_info=exc)

    # -- serving ---------------------------------------------------------------------
    def _require_compiled(self) -> ModuleType:
        if self._module is None:
            raise RuntimeError("call app.compile() before run()")
        return self._module

    def stats(self) -> Dict[str, int]:
        """Counters of this process's loop: requests, static_responses,
        python_calls (dynamic handler invocations), connections (accepted),
        open_connections, errors, wakeups, writes."""
        return dict(self._require_compiled().stats())

    def backend(self) -> str:
        """The event backend compiled into the app ("epoll", "kqueue" or "poll")."""
        return str(self._require_compiled().backend())

    def _serve_worker(self, listen_fd: int) -> None:
        """Run the C loop on an already listening, non-blocking socket until
        :meth:`_request_stop`; the loop owns ``listen_fd`` from here and closes
        it when it stops accepting. Returns after the drain (all connections
        done or drain_timeout passed). One app serves per process at a time.
        Re-raises a KeyboardInterrupt/SystemExit raised by a handler or a
        signal handler, after the drain."""
        module = self._require_compiled()
        if isinstance(listen_fd, bool) or not isinstance(listen_fd, int) or listen_fd < 0:
            raise ValueError(f"listen_fd must be a non-negative int, got {listen_fd!r}")
        # Apps with identical routes share one compiled module (and its handler table):
        # install this app's handlers and limits before serving.
        module.configure(**self._configuration)
        module.serve(listen_fd)

    def _request_stop(self) -> None:
        """Ask the loop to stop accepting and drain. Safe from a Python signal handler."""
        self._draining = True  # ready_check() answers 503 from now on
        if self._module is not None:
            self._module.request_stop()

    def run(self, port: int = 8080, host: str = "0.0.0.0", workers: int = 1, *,
            uds: Optional[str] = None, uds_mode: Optional[int] = None, fd: Optional[int] = None,
            max_requests: int = 0, max_requests_jitter: int = 0, max_worker_rss: float = 0) -> None:
        """Serve on host:port until SIGTERM/SIGINT, then drain and return.

        workers > 1 forks that many processes (hypersonic._supervisor); so does
        a recycling limit (max_requests [+ a random 0..max_requests_jitter]
        requests, or max_worker_rss MiB of resident memory: the worker is
        replaced, its successor listening before it stops accepting), and a
        forked server replaces its workers one at a time on SIGHUP.
        uds="/path.sock" serves on a Unix domain socket instead (uds_mode sets
        its permissions, e.g. 0o660); fd=N serves on an inherited listening
        socket (systemd socket activation). See docs/OPERATIONS.md.
        Raises RuntimeError before compile(), ValueError for bad arguments,
        OSError when the address cannot be bound.
        """
        self._require_compiled()
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int from 0 to 65535, got {port!r}")
        if not isinstance(host, str):
            raise TypeError(f"host must be a str, not {type(host).__name__}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        from . import _supervisor

        # Fail before binding when the access log cannot be appended to (workers open it themselves).
        _accesslog.check_writable(_accesslog.resolve_destination(self.access_log),
                                  error=_supervisor.ServerStartupError)
        limits = _supervisor.WorkerLimits(max_requests, max_requests_jitter, max_worker_rss)
        listen: Dict[str, Any] = dict(uds=uds, uds_mode=uds_mode, fd=fd)
        if workers > 1 or limits.active:
            _supervisor.serve(self, host, port, workers, limits=limits, **listen)
        else:
            # Same listener, startup line and SIGTERM/SIGINT -> _request_stop contract as a worker.
            _supervisor.serve_in_process(self, host, port, **listen)


def _as_mount(handler: Any) -> Optional["StaticMount"]:
    """The handler when it is an app.static() mount, else None (hypersonic._static is only
    imported once a mount exists, so a worker without one does not load it)."""
    static_module = sys.modules.get("hypersonic._static")
    if static_module is not None and isinstance(handler, static_module.StaticMount):
        return cast("StaticMount", handler)
    return None


def _backend_defines() -> Dict[str, Optional[str]]:
    """-D flags selecting the event backend: HYPERSONIC_EVENT_BACKEND=poll forces poll(2);
    anything else (or unset) keeps the platform's native backend."""
    requested = os.environ.get("HYPERSONIC_EVENT_BACKEND", "").strip().lower()
    if requested == "poll":
        return {"HS_EVENT_BACKEND_POLL": None}
    if requested not in ("", "epoll", "kqueue", "native"):
        raise ValueError(f"HYPERSONIC_EVENT_BACKEND={requested!r}: expected epoll, kqueue or poll")
    return {}
