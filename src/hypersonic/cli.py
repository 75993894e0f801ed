"""The ``hypersonic`` command: serve ``module:app`` with options from flags or env.

``hypersonic module:app --port 8080 --workers 4`` (or ``python -m hypersonic``);
``hypersonic prebuild module:app`` fills the compiled-C cache ahead of time.
Every option maps one-to-one onto :meth:`hypersonic.Hypersonic.run` or the
:class:`hypersonic.Hypersonic` constructor, and each has an environment
fallback, ``HYPERSONIC_<OPTION>`` (e.g. ``HYPERSONIC_PORT``). Precedence: the
flag, then the environment variable, then (for constructor options) what the app
module itself passed to ``Hypersonic(...)``, then the documented default.

The module is imported with the current directory first on ``sys.path``; the
app is compiled if the module did not compile it. Errors in the app path, the
options or at startup end the command with a one-line message (exit status 2
for usage errors, 1 for startup failures) instead of a traceback.

:func:`run_app` gives a script the same options for an app it already holds:
``python examples/app.py --port 8080``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

from ._version import __version__

__all__ = ["AppImportError", "OPTIONS", "build_parser", "load_app", "main", "run_app"]

log = logging.getLogger("hypersonic.cli")

#: Prefix of every environment fallback.
ENV_PREFIX = "HYPERSONIC_"
#: Exit status for a bad command line, app path or option value (argparse's own).
EXIT_USAGE = 2
#: Exit status when the server could not start.
EXIT_STARTUP = 1
#: Log record format of the command's logging setup.
LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})

#: Defaults of run() options (the constructor's come from its signature).
RUN_DEFAULTS: Dict[str, Any] = {"host": "0.0.0.0", "port": 8080, "workers": 1, "uds": None, "uds_mode": None,
                                "fd": None, "max_requests": 0, "max_requests_jitter": 0, "max_worker_rss": 0}


class AppImportError(Exception):
    """``module:app`` could not be turned into a Hypersonic app (message says why)."""


@dataclass(frozen=True)
class Option:
    """One command-line option, its environment fallback and where it goes."""

    name: str            # dest, and the run()/constructor keyword it maps to
    kind: type           # int, float, str or bool
    target: str          # "run", "app" (constructor keyword) or "cli"
    help: str
    keyword: Optional[str] = None  # constructor keyword when it differs from name
    negate: bool = False  # a --no-X switch that sets keyword to False

    @property
    def flag(self) -> str:
        """The long command-line flag."""
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable consulted when the flag is absent."""
        return ENV_PREFIX + self.name.upper()


OPTIONS: List[Option] = [
    Option("host", str, "run", "interface to listen on: an IPv4/IPv6 address or a host name; "
           "'0.0.0.0' is every IPv4 interface, '::' every interface (dual stack)"),
    Option("port", int, "run", "TCP port to listen on (0 picks a free one, shown in the startup line)"),
    Option("workers", int, "run", "worker processes, each with its own SO_REUSEPORT listener; "
           "the parent restarts a worker that dies"),
    Option("uds", str, "run", "serve on this Unix domain socket path instead of host:port "
           "(a stale socket file nothing accepts on is replaced)"),
    Option("uds_mode", str, "run", "permissions of the --uds socket file, octal (e.g. 660)"),
    Option("fd", int, "run", "serve on this inherited listening socket fd instead of host:port; "
           "without --fd/--uds, systemd socket activation (LISTEN_FDS/LISTEN_PID) is used when present"),
    Option("max_requests", int, "run", "recycle a worker after this many requests (0: never); its "
           "replacement listens before it stops accepting"),
    Option("max_requests_jitter", int, "run", "add a random 0..N to each worker's --max-requests"),
    Option("max_worker_rss", float, "run", "recycle a worker whose resident memory passes this many MiB (0: never)"),
    Option("cache_dir", str, "app", "directory of the compiled-C cache"),
    Option("max_connections", int, "app", "open connections per worker; more wait in the listen backlog"),
    Option("max_request_size", int, "app", "largest request body in bytes (larger: 413)"),
    Option("keepalive_timeout", float, "app", "seconds an idle keep-alive connection is kept open"),
    Option("recv_timeout", float, "app", "seconds a request head may take to arrive (slower: 408)"),
    Option("drain_timeout", float, "app", "seconds in-flight requests get to finish on SIGTERM/SIGINT"),
    Option("access_log", str, "app", "write an access log line per request to this file (appended to; "
           "workers share it) or to standard output with '-'"),
    Option("access_log_format", str, "app", "access log format: 'common', 'combined' or a format string of "
           "nginx-style variables such as '$remote_addr \"$request\" $status $request_time_us $http_user_agent'"),
    Option("no_security_headers", bool, "app", "do not add the default security headers to responses",
           keyword="enable_security_headers", negate=True),
    Option("log_level", str, "cli", "logging level: " + ", ".join(LOG_LEVELS)),
]

_OPTION_BY_NAME = {option.name: option for option in OPTIONS}


def _constructor_defaults() -> Dict[str, Any]:
    """Defaults from ``Hypersonic.__init__``'s signature (empty if the core is absent)."""
    try:
        from .app import Hypersonic
    except ImportError:  # pragma: no cover - the core ships with the package
        return {}
    defaults: Dict[str, Any] = {}
    for parameter in inspect.signature(Hypersonic.__init__).parameters.values():
        if parameter.default is not inspect.Parameter.empty:
            defaults[parameter.name] = parameter.default
    return defaults


def _default_text(option: Option, constructor_defaults: Dict[str, Any]) -> str:
    if option.target == "run":
        default = RUN_DEFAULTS[option.name]
        return "none" if default is None else repr(default)
    if option.target == "cli":
        return "'info'"
    keyword = option.keyword or option.name
    if option.negate:
        return "off (security headers on)"
    if option.name == "cache_dir":
        return "the app's setting, else $HYPERSONIC_CACHE_DIR, else ./_hypersonic_cache"
    if keyword in constructor_defaults:
        return f"the app's setting, else {constructor_defaults[keyword]!r}"
    return "the app's setting"


def build_parser(with_app_argument: bool = True, prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The argument parser; ``with_app_argument=False`` for :func:`run_app` scripts."""
    constructor_defaults = _constructor_defaults()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a Hypersonic app. Every option can also be set through the\n"
                    "environment variable shown with it; a flag wins over the variable.",
        epilog="Examples: hypersonic examples.app:app --port 8080 --workers 4\n"
               "          HYPERSONIC_PORT=9000 python -m hypersonic myproject.web:app",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if with_app_argument:
        parser.add_argument("app", metavar="MODULE:APP",
                            help="import path of the app: a module importable from the current "
                                 "directory, a colon, and the Hypersonic object's name "
                                 "(':app' may be left out)")
    for option in OPTIONS:
        text = f"{option.help} [env {option.env}; default {_default_text(option, constructor_defaults)}]"
        if option.kind is bool:
            parser.add_argument(option.flag, dest=option.name, action="store_const", const=True,
                                default=None, help=text)
        else:
            metavar = {int: "N", float: "SECONDS", str: "TEXT"}[option.kind]
            if option.name == "host":
                metavar = "HOST"
            elif option.name == "cache_dir":
                metavar = "DIR"
            elif option.name == "log_level":
                metavar = "LEVEL"
            elif option.name in ("uds", "access_log"):
                metavar = "PATH"
            elif option.name == "access_log_format":
                metavar = "FORMAT"
            elif option.name == "uds_mode":
                metavar = "MODE"
            elif option.name == "max_worker_rss":
                metavar = "MIB"
            elif option.name == "fd":
                metavar = "FD"
            parser.add_argument(option.flag, dest=option.name, metavar=metavar, default=None,
                                help=text, type=_converter(option, option.flag))
    parser.add_argument("--version", action="version", version=f"hypersonic {__version__}")
    return parser


def _converter(option: Option, source: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return _convert(option, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = option.kind.__name__
    return convert


def _convert(option: Option, text: str) -> Any:
    """Parse one option value from text; ValueError says what was expected."""
    if option.kind is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected one of 1/0, true/false, yes/no, on/off, got {text!r}")
    if option.kind is int:
        try:
            value: Any = int(text, 10)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    elif option.kind is float:
        try:
            value = float(text)
        except ValueError:
            unit = "MiB" if option.name == "max_worker_rss" else "seconds"
            raise ValueError(f"expected a number of {unit}, got {text!r}") from None
    else:
        value = text
    if option.name == "uds_mode":
        try:
            value = int(text, 8)
        except ValueError:
            raise ValueError(f"expected an octal permission such as 660, got {text!r}") from None
        if not 0 <= value <= 0o7777:
            raise ValueError(f"expected an octal permission such as 660, got {text!r}")
    if option.name == "uds" and not value:
        raise ValueError("expected a socket path")
    if option.name in ("fd", "max_requests", "max_requests_jitter") and value < 0:
        raise ValueError(f"expected a non-negative integer, got {text!r}")
    if option.name == "max_worker_rss" and value < 0:
        raise ValueError(f"expected a non-negative number of MiB, got {text!r}")
    if option.name == "port" and not 0 <= value <= 65535:
        raise ValueError(f"expected a port between 0 and 65535, got {text!r}")
    if option.name in ("workers", "max_connections", "max_request_size") and value < 1:
        raise ValueError(f"expected at least 1, got {text!r}")
    if option.kind is float and value < 0:
        raise ValueError(f"expected a non-negative number, got {text!r}")
    if option.name == "log_level" and value.lower() not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return value


def resolve_options(namespace: argparse.Namespace, environ: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Flag values, else environment values; only options given one way or the other.

    Raises :class:`ValueError` naming the environment variable for a bad value.
    """
    environ = dict(os.environ if environ is None else environ)
    given: Dict[str, Any] = {}
    for option in OPTIONS:
        value = getattr(namespace, option.name, None)
        if value is None and option.env in environ:
            try:
                value = _convert(option, environ[option.env])
            except ValueError as exc:
                raise ValueError(f"environment variable {option.env}: {exc}") from None
        if value is not None:
            given[option.name] = value
    return given


# --------------------------------------------------------------------------- the app


def _is_hypersonic(obj: object) -> bool:
    try:
        from .app import Hypersonic
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, Hypersonic)


def load_app(path: str) -> Any:
    """Import ``module:attribute`` (cwd first on sys.path) and return the app.

    Raises :class:`AppImportError` with a one-line reason for a malformed path,
    a module that is not found, a missing attribute or a non-Hypersonic object.
    An exception raised *inside* the app module propagates, traceback and all.
    """
    if not isinstance(path, str):
        raise TypeError(f"app path must be a str, not {type(path).__name__}")
    module_name, _, attribute = path.partition(":")
    attribute = attribute or "app"
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")) \
            or not all(part.isidentifier() for part in attribute.split(".")):
        raise AppImportError(f"invalid app path {path!r}: expected 'module:app', "
                             "e.g. 'examples.app:app'")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise AppImportError(f"cannot import {module_name!r} (from {path!r}): no module named "
                                 f"{missing!r} in {cwd} or on sys.path") from None
        raise
    obj: Any = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppImportError(f"module {module_name!r} has no attribute {attribute!r} "
                                 f"(from {path!r})") from None
    if not _is_hypersonic(obj):
        raise AppImportError(f"{path!r} is a {type(obj).__module__}.{type(obj).__qualname__}, "
                             "not a hypersonic.Hypersonic app")
    return obj


def _is_compiled(app: Any) -> bool:
    for name in ("compiled", "_compiled", "is_compiled"):
        value = getattr(app, name, None)
        if isinstance(value, bool):
            return value
    return False


def apply_app_options(app: Any, given: Dict[str, Any]) -> None:
    """Set the constructor options given on the command line onto ``app``.

    The values are validated by the constructor itself (a throwaway
    ``Hypersonic(...)`` built from the app's settings with the given ones over
    them), so a bad value fails with the constructor's message naming the
    argument. ``--no-security-headers`` drops the default security headers and
    keeps those the app set itself. Raises :class:`AppImportError` if the app is
    already compiled and a given option differs (its value is baked in by then).
    """
    settings: Dict[str, Any] = {}
    for name, value in given.items():
        option = _OPTION_BY_NAME[name]
        if option.target != "app":
            continue
        keyword = option.keyword or option.name
        settings[keyword] = (not value) if option.negate else value
    if not settings:
        return
    if _is_compiled(app):
        # cache_dir only matters to compile(), which is done: nothing left to change.
        changed = sorted(k for k, v in settings.items()
                         if k != "cache_dir" and getattr(app, k, object()) != v)
        if changed:
            raise AppImportError("the app module already called compile(), so "
                                 + ", ".join(changed) + " can no longer change. Leave compile() "
                                 "to the hypersonic command, or pass the values to Hypersonic(...)")
        return
    from .app import DEFAULT_SECURITY_HEADERS, Hypersonic

    keywords = [name for name in inspect.signature(Hypersonic.__init__).parameters
                if name not in ("self", "security_headers")]
    arguments = {name: getattr(app, name) for name in keywords if hasattr(app, name)}
    arguments.update(settings)
    own_headers: Dict[str, Optional[str]] = {}
    if "enable_security_headers" in settings:
        defaults = {(name.lower(), value) for name, value in DEFAULT_SECURITY_HEADERS}
        own_headers = {name: value for name, value in getattr(app, "security_headers", [])
                       if (name.lower(), value) not in defaults}
    validated = Hypersonic(security_headers=own_headers, **arguments)
    for keyword in settings:
        setattr(app, keyword, getattr(validated, keyword))
    if "enable_security_headers" in settings:
        app.security_headers = validated.security_headers


def _setup_logging(level_name: str) -> None:
    level = getattr(logging, level_name.upper())
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    root.setLevel(level)
    logging.getLogger("hypersonic").setLevel(level)


def _serve_supervised(app: Any, run_kwargs: Dict[str, Any], reload: Callable[[], Any]) -> None:
    """The forked server, with ``reload`` (SIGHUP re-imports the app module)."""
    from . import _supervisor

    limits = _supervisor.WorkerLimits(run_kwargs["max_requests"], run_kwargs["max_requests_jitter"],
                                      run_kwargs["max_worker_rss"])
    _supervisor.serve(app, run_kwargs["host"], run_kwargs["port"], run_kwargs["workers"],
                      uds=run_kwargs["uds"], uds_mode=run_kwargs["uds_mode"], fd=run_kwargs["fd"],
                      limits=limits, reload=reload)


def reloader(path: str, given: Dict[str, Any]) -> Callable[[], Any]:
    """A SIGHUP reload for the app at ``path``: re-import its module (``importlib.reload``;
    modules it imports are not re-imported), apply the command's options, compile."""

    def reload() -> Any:
        module_name = path.partition(":")[0]
        module = sys.modules.get(module_name)
        if module is not None:
            importlib.invalidate_caches()
            importlib.reload(module)
        app = load_app(path)
        apply_app_options(app, given)
        if not _is_compiled(app):
            app.compile()
        return app

    return reload


def _serve(app: Any, given: Dict[str, Any], reload: Optional[Callable[[], Any]] = None) -> int:
    """Compile if needed, run until stopped; returns the exit status."""
    from ._supervisor import ServerStartupError

    from .jit import CompileError, CompilerNotFound

    run_kwargs = {name: given.get(name, default) for name, default in RUN_DEFAULTS.items()}
    if run_kwargs["fd"] is None and run_kwargs["uds"] is None:
        from ._supervisor import systemd_listen_fd

        activated = systemd_listen_fd()
        if activated is not None:
            log.info("systemd socket activation: serving on fd %d", activated)
            run_kwargs["fd"] = activated
    try:
        if not _is_compiled(app):
            app.compile()
        if reload is not None and (run_kwargs["workers"] > 1 or run_kwargs["max_requests"]
                                   or run_kwargs["max_worker_rss"]):
            _serve_supervised(app, run_kwargs, reload)
        else:
            app.run(**run_kwargs)
    except (ServerStartupError, CompilerNotFound, CompileError) as exc:
        sys.stderr.write(f"hypersonic: error: {exc}\n")
        return EXIT_STARTUP
    except OSError as exc:  # binding in run() itself (workers=1)
        reason = exc.strerror or str(exc)
        sys.stderr.write(f"hypersonic: error: cannot listen on {run_kwargs['host']}:{run_kwargs['port']}: "
                         f"{reason[:1].lower()}{reason[1:]}\n")
        return EXIT_STARTUP
    except KeyboardInterrupt:  # a Ctrl-C the server did not handle itself
        return 0
    return 0


def run_app(app: Any, argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """Serve an app object with the command's options parsed from ``argv``.

    For scripts: ``raise SystemExit(run_app(app))`` gives ``python script.py
    --port 8080 --workers 2`` the same flags and environment fallbacks as the
    ``hypersonic`` command. Returns the exit status.
    """
    parser = build_parser(with_app_argument=False, prog=prog)
    namespace = parser.parse_args(argv)
    return _run(parser, namespace, lambda: app)


def _run(parser: argparse.ArgumentParser, namespace: argparse.Namespace,
         get_app: Callable[[], Any], app_path: Optional[str] = None) -> int:
    try:
        given = resolve_options(namespace)
    except ValueError as exc:
        parser.error(str(exc))
    if "uds" in given and "fd" in given:
        parser.error("give --uds or --fd, not both")
    if "uds_mode" in given and "uds" not in given:
        parser.error("--uds-mode needs --uds")
    if given.get("max_requests_jitter") and not given.get("max_requests"):
        parser.error("--max-requests-jitter needs --max-requests")
    _setup_logging(given.get("log_level", "info"))
    try:
        app = get_app()  # an exception raised by the app module itself keeps its traceback
        if not _is_hypersonic(app):
            raise AppImportError(f"expected a hypersonic.Hypersonic app, got {type(app).__name__}")
        try:
            apply_app_options(app, given)
        except (TypeError, ValueError) as exc:  # the constructor's own validation message
            raise AppImportError(str(exc)) from None
    except AppImportError as exc:
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {exc}\n")
    return _serve(app, given, reloader(app_path, given) if app_path else None)


def prebuild_main(argv: Sequence[str]) -> int:
    """``hypersonic prebuild MODULE:APP [...] [--cache-dir DIR]``: compile everything the
    apps need into the cache, so a host without a compiler serves them natively."""
    from pathlib import Path

    from .jit.__main__ import prebuild

    parser = argparse.ArgumentParser(
        prog="hypersonic prebuild",
        description="Compile the native modules of the named apps into the cache (needs a C compiler "
                    "and the Python headers). Ship the cache with the app and point HYPERSONIC_CACHE_DIR "
                    "at it: the production host then needs no compiler. Run it with the same Python, "
                    "HYPERSONIC_EVENT_BACKEND and HYPERSONIC_JIT_CFLAGS as production.")
    parser.add_argument("apps", nargs="+", metavar="MODULE:APP", help="the app(s) to compile, as for `hypersonic`")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="cache to fill [env HYPERSONIC_CACHE_DIR; default ./_hypersonic_cache]")
    args = parser.parse_args(list(argv))
    try:
        given = resolve_options(argparse.Namespace())  # the HYPERSONIC_* environment, as at run time
    except ValueError as exc:
        parser.error(str(exc))
    targets: Dict[str, Callable[[Optional[Path]], None]] = {}
    for spec in args.apps:
        module_name, _, attribute = spec.partition(":")
        spec = f"{module_name}:{attribute or 'app'}"

        def build(cache_dir: Optional[Path], spec: str = spec) -> None:
            if cache_dir is not None:  # an app built with cache_dir=None follows the variable
                os.environ[ENV_PREFIX + "CACHE_DIR"] = str(cache_dir)
            app = load_app(spec)
            # e.g. HYPERSONIC_NO_SECURITY_HEADERS changes the generated C; --cache-dir wins over the env.
            options = {k: v for k, v in given.items() if k != "cache_dir" or cache_dir is None}
            apply_app_options(app, options)
            if not _is_compiled(app):
                app.compile()

        targets[f"app {spec}"] = build
    cache_dir = args.cache_dir or os.environ.get(ENV_PREFIX + "CACHE_DIR") or None
    try:
        return prebuild(targets, Path(cache_dir).resolve() if cache_dir else None)
    except AppImportError as exc:
        print(f"hypersonic prebuild: error: {exc}", file=sys.stderr)
        return 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``hypersonic`` and ``python -m hypersonic``; returns the exit status.

    ``hypersonic prebuild MODULE:APP`` is the one subcommand (see :func:`prebuild_main`).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["prebuild"]:
        return prebuild_main(arguments[1:])
    parser = build_parser(with_app_argument=True, prog="hypersonic")
    namespace = parser.parse_args(argv)
    return _run(parser, namespace, lambda: load_app(namespace.app), namespace.app)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
