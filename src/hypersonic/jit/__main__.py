"""Command line of the JIT: ``python -m hypersonic.jit {prebuild,info}``.

``prebuild [--cache-dir DIR] [--target NAME ...] [--app MODULE:ATTR ...]`` fills a cache ahead of time,
for read-only deployments and hosts without a C compiler: it builds every
selected target into DIR (default: ``$HYPERSONIC_CACHE_DIR``, else each
target's default directory in the current directory) and prints one line per
module: ``built`` or ``cached``, the file, and its top source. Run it with the
same Python, ``CC`` and ``HYPERSONIC_JIT_CFLAGS`` as the deployment; at run time
point ``HYPERSONIC_CACHE_DIR`` (or ``cache_dir=``) at DIR. A host without a
compiler uses a prebuilt module built from the same source, Python and flags.

``info`` prints the compiler that would be used, the Python headers, the flags
and the cache directories, or why native code cannot be built.

``prebuild --app module:attr`` also compiles that Hypersonic app's server
module (its static handlers run, as at ``app.compile()``); run it from the
directory the app is imported from.

Extension point: :data:`PREBUILD_TARGETS` maps a target name to a function
``build(cache_dir: Optional[Path]) -> None`` that loads its modules through
:func:`hypersonic.jit.load_extension`; anything it loads is reported.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .cache import CACHE_DIR_ENV, base_cflags, extra_cflags, loaded_history, user_cache_dir
from .compiler import CompileError, CompilerNotFound, find_compiler, python_include_dir

#: A prebuild target: builds (loads) its modules into cache_dir (None: the default location).
PrebuildTarget = Callable[[Optional[Path]], None]

SOCKET_DEFAULT_CACHE_NAME = "_hypersonic_socket_cache"
SERVER_DEFAULT_CACHE_NAME = "_hypersonic_cache"


def _use_cache_dir(cache_dir: Optional[Path]) -> None:
    # Modules compiled on import (hypersonic.socket) or by an app built with cache_dir=None
    # follow $HYPERSONIC_CACHE_DIR: make every build of this process land in cache_dir.
    if cache_dir is not None:
        os.environ[CACHE_DIR_ENV] = str(cache_dir)


def _prebuild_socket(cache_dir: Optional[Path]) -> None:
    """The socket ops module as selected by the environment (compile_socket_ops), then every
    other native event backend of this machine, so HYPERSONIC_EVENT_BACKEND can be changed
    at deployment without a compiler."""
    _use_cache_dir(cache_dir)
    directory = None if cache_dir is None else str(cache_dir)
    socket_module = importlib.import_module("hypersonic.socket")
    socket_module.compile_socket_ops(cache_dir=directory)
    for backend in socket_module.available_backends():
        if backend != "reference":  # the pure-Python one has nothing to build
            socket_module.load(backend, cache_dir=directory)


def _app_target(spec: str) -> PrebuildTarget:
    """A target compiling the Hypersonic app at ``module:attribute`` (imported from the current dir)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise argparse.ArgumentTypeError(f"--app must look like module:attribute, not {spec!r}")

    def build(cache_dir: Optional[Path]) -> None:
        _use_cache_dir(cache_dir)
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        app = getattr(importlib.import_module(module_name), attribute)
        if not getattr(app, "compiled", False):  # an app module may compile at import
            app.compile()

    return build


#: Targets built by ``prebuild`` (default: all of these), in order. ``--app`` adds more.
PREBUILD_TARGETS: Dict[str, PrebuildTarget] = {"socket": _prebuild_socket}


def _prebuild(args: argparse.Namespace) -> int:
    cache_dir = Path(args.cache_dir).resolve() if args.cache_dir else None
    targets: Dict[str, PrebuildTarget] = {name: PREBUILD_TARGETS[name] for name in args.target or PREBUILD_TARGETS}
    targets.update({f"app {spec}": _app_target(spec) for spec in args.app or ()})
    return prebuild(targets, cache_dir)


def app_targets(specs: List[str]) -> Dict[str, PrebuildTarget]:
    """Prebuild targets compiling the Hypersonic apps named ``module:attribute``."""
    return {f"app {spec}": _app_target(spec) for spec in specs}


def prebuild(targets: Dict[str, PrebuildTarget], cache_dir: Optional[Path]) -> int:
    """Build ``targets`` into ``cache_dir`` (None: the default location), printing one line
    per module loaded; returns the exit status (1 when a target failed or loaded nothing
    native). Native code is required here: HYPERSONIC_JIT=0 is ignored, and set to 1."""
    if os.environ.get("HYPERSONIC_JIT", "").strip() == "0":
        print("note: HYPERSONIC_JIT=0 ignored: prebuild builds the native modules", file=sys.stderr)
    os.environ["HYPERSONIC_JIT"] = "1"  # no silent fallback to the pure-Python server
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    for target, build in targets.items():
        seen = len(loaded_history())
        try:
            build(cache_dir)
        except (CompilerNotFound, CompileError, ImportError, OSError) as exc:
            print(f"prebuild of {target!r} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        records = loaded_history()[seen:]
        if not records:
            print(f"prebuild of {target!r} loaded no native module (is the pure-Python fallback in use?)",
                  file=sys.stderr)
            return 1
        for record in records:
            print(f"{'built ' if record.built else 'cached'}  {record.path}  ({target}: {record.main})")
    return 0


def _info(args: argparse.Namespace) -> int:
    del args
    print(f"python:          {sys.executable} ({sys.version.split()[0]})")
    print(f"python headers:  {python_include_dir()}")
    status = 0
    try:
        compiler = find_compiler()
        print(f"compiler:        {' '.join(compiler.argv)}")
        print(f"compiler version: {compiler.version.splitlines()[0] if compiler.version else '?'}")
    except CompilerNotFound as exc:
        print(f"compiler:        NONE\n{exc}")
        status = 1
    print(f"flags:           {' '.join(base_cflags() + extra_cflags())}")
    env = os.environ.get(CACHE_DIR_ENV, "").strip()
    for name in (SOCKET_DEFAULT_CACHE_NAME, SERVER_DEFAULT_CACHE_NAME):
        where = (f"{env} (${CACHE_DIR_ENV})" if env else
                 f"{Path.cwd() / name} if writable, else {user_cache_dir() / name.lstrip('_')}")
        print(f"cache dir ({name}): {where}")
    return status


def _checked_app_spec(spec: str) -> str:
    _app_target(spec)  # raises ArgumentTypeError for a malformed spec
    return spec


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m hypersonic.jit``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m hypersonic.jit", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("prebuild", help="build the native modules into a cache ahead of time")
    pre.add_argument("--cache-dir", help="cache root to fill (default: $HYPERSONIC_CACHE_DIR, else ./<default>)")
    pre.add_argument("--target", action="append", choices=sorted(PREBUILD_TARGETS),
                     help="what to build (repeatable; default: all)")
    pre.add_argument("--app", action="append", metavar="MODULE:ATTR", type=_checked_app_spec,
                     help="also compile this Hypersonic app (as the `hypersonic` CLI names it; repeatable)")
    pre.set_defaults(func=_prebuild)
    info = sub.add_parser("info", help="show the compiler, flags and cache dirs that would be used")
    info.set_defaults(func=_info)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
