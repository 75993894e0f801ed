"""The on-disk cache of compiled modules: keying, locked build-and-publish, loading.

Theory of operation
-------------------
A module is identified by a cache key, the sha256 of everything that can change
the binary: the top file's name, every ``csrc/*.c``/``*.h`` file, the generated
files, the package version, the Python ABI (cache tag, EXT_SUFFIX, full
version, header directory), platform and machine, every compiler flag
(base flags, ``-D`` defines, ``$HYPERSONIC_JIT_CFLAGS``) and the compiler's
identity (argv, real path, ``--version`` output). It is computed in two steps:
the *source key* covers everything but the compiler; the *key* adds the
compiler. The module is ``_hs_<key>`` and lives in the cache root as
``_hs_<key><EXT_SUFFIX>``.

Layout of a cache root::

    _hs_<key><EXT_SUFFIX>   published modules; only ever written by os.replace
    .lock                   flock'ed around check-build-publish
    .build-_hs_<key>-XXXX/  a build in progress. Holding the lock, any such dir
                            without a FAILED file belongs to a crashed build and
                            is removed; failed builds (FAILED file, source,
                            generated files, build.sh) are kept for inspection,
                            at most MAX_KEPT_FAILED_BUILDS of them and for at
                            most KEPT_FAILED_BUILD_SECONDS.
    prebuilt-<source key>   the file name of a module built from this source,
                            Python and flags; used when no compiler is present,
                            or when the compiler differs and the root is read-only
                            (a cache prebuilt on another machine).

Loading: a module already loaded in this process is returned as is. Otherwise
each lookup root is tried without a lock (the common, read-only case). On a
miss the lock is taken, the target re-checked (another process may have
published it meanwhile), stale build dirs cleaned, the module built in a
private temp dir inside the root and published with one os.replace. A cached
file that fails to load (truncated, corrupt, wrong ABI) is a miss: a
RuntimeWarning is issued and it is rebuilt and loaded in the same process.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shlex
import shutil
import sys
import threading
import time
import warnings
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, TextIO, Tuple, Union

from .._version import __version__
from .compiler import Compiler, CompileError, CompilerNotFound, find_compiler, run_compiler

__all__ = ["CSRC_DIR", "CacheNotWritable", "LoadRecord", "base_cflags", "load_extension", "loaded_history", "resolve_cache_dir"]

log = logging.getLogger("hypersonic.jit")

#: Directory holding the C sources shipped with the package.
CSRC_DIR = Path(__file__).resolve().parent.parent / "csrc"

#: Environment variable naming the cache root (when no cache_dir argument is given).
CACHE_DIR_ENV = "HYPERSONIC_CACHE_DIR"
#: Environment variable whose (shell-split) contents are appended to every compile.
EXTRA_CFLAGS_ENV = "HYPERSONIC_JIT_CFLAGS"

LOCK_FILE_NAME = ".lock"
BUILD_DIR_PREFIX = ".build-"
FAILED_MARKER = "FAILED"
INDEX_PREFIX = "prebuilt-"
#: Failed builds kept for inspection: how many, and for how long.
MAX_KEPT_FAILED_BUILDS = 10
KEPT_FAILED_BUILD_SECONDS = 24 * 3600
#: How long to wait for another process's build (the lock) before giving up.
LOCK_WAIT_SECONDS = 900
LOCK_POLL_MIN_SECONDS = 0.005
LOCK_POLL_MAX_SECONDS = 0.1
#: Hex digits of sha256 kept in keys (96 bits).
KEY_HEX_DIGITS = 24

PathLike = Union[str, "os.PathLike[str]"]

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*\Z")
_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@lru_cache(maxsize=None)
def ext_suffix() -> str:
    """The file suffix of extension modules for this interpreter (e.g. ``.cpython-311-x86_64-linux-gnu.so``)."""
    import sysconfig

    return sysconfig.get_config_var("EXT_SUFFIX") or ".so"


@lru_cache(maxsize=None)
def _module_file_pattern() -> "re.Pattern[str]":
    return re.compile(r"(_hs_[0-9a-f]{%d})" % KEY_HEX_DIGITS + re.escape(ext_suffix()) + r"\Z")


class LoadRecord(NamedTuple):
    """One module made available by :func:`load_extension` in this process."""

    main: str
    name: str
    path: Path
    #: True when this process compiled it; False when it came from the cache.
    built: bool


# Modules loaded in this process, by key (an extension module cannot be loaded twice).
_loaded: Dict[str, ModuleType] = {}
_history: List[LoadRecord] = []
# Serialises load_extension between threads. The flock serialises processes; it also excludes
# threads on Linux (one open file description each), but not where flock is emulated with
# per-process fcntl locks (NFS), and _loaded/_history need it anyway.
_process_lock = threading.Lock()


def loaded_history() -> List[LoadRecord]:
    """The modules :func:`load_extension` loaded or built in this process, in order."""
    return list(_history)


def base_cflags() -> List[str]:
    """Flags every build uses, before the -D defines and HYPERSONIC_JIT_CFLAGS."""
    flags = ["-O2", "-fPIC", "-shared", "-std=gnu11", "-Wall", "-Wextra", "-fvisibility=hidden",
             "-fno-strict-aliasing"]
    if sys.platform == "darwin":
        flags += ["-undefined", "dynamic_lookup"]
    return flags


def extra_cflags() -> List[str]:
    """The flags from $HYPERSONIC_JIT_CFLAGS (shell syntax), appended to every compile."""
    raw = os.environ.get(EXTRA_CFLAGS_ENV, "")
    try:
        return shlex.split(raw)
    except ValueError as exc:
        raise ValueError(f"${EXTRA_CFLAGS_ENV} is not valid shell syntax ({exc}): {raw!r}") from None


# --- where the cache lives ---------------------------------------------------------------------

def user_cache_dir() -> Path:
    """The per-user cache directory of hypersonic (XDG_CACHE_HOME / ~/Library/Caches based)."""
    if sys.platform == "darwin":
        base = Path("~/Library/Caches").expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path("~/.cache").expanduser()
    if not base.is_absolute():  # no usable home directory
        import tempfile

        base = Path(tempfile.gettempdir()) / f"hypersonic-{os.getuid()}"
    return base / "hypersonic"


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _check_cache_dir(cache_dir: object) -> Optional[Path]:
    if cache_dir is None:
        return None
    if not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be a path (str or os.PathLike) or None, not {type(cache_dir).__name__}")
    text = os.fspath(cache_dir)
    if not isinstance(text, str):
        raise TypeError(f"cache_dir must be a str path, not {type(text).__name__}")
    if not text:
        raise ValueError("cache_dir must not be an empty string")
    return Path(os.path.abspath(os.path.expanduser(text)))


def _check_plain_name(value: object, arg: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{arg} must be a str, not {type(value).__name__}")
    if not _PLAIN_NAME.match(value):
        raise ValueError(f"{arg} must be a plain file name (letters, digits, '_.+-', no directory), got {value!r}")
    return value


def _cache_roots(cache_dir: object, default_name: str) -> Tuple[Path, List[Path]]:
    """(root new builds go to, roots to look modules up in, in order)."""
    explicit = _check_cache_dir(cache_dir)
    _check_plain_name(default_name, "default_cache_name")
    if explicit is not None:
        return explicit, [explicit]
    env = os.environ.get(CACHE_DIR_ENV, "").strip()
    if env:
        path = Path(os.path.abspath(os.path.expanduser(env)))
        return path, [path]
    local = Path.cwd() / default_name
    if _writable_dir(local):
        return local, [local]
    fallback = user_cache_dir() / default_name.lstrip("_")
    log.info("cache dir %s is not writable; building into %s", local, fallback)
    # A read-only ./<default_name> may hold a prebuilt cache: look there first.
    return fallback, ([local, fallback] if local.is_dir() else [fallback])


def resolve_cache_dir(cache_dir: Optional[PathLike], default_name: str) -> Path:
    """The cache root new builds go to: the ``cache_dir`` argument, else
    ``$HYPERSONIC_CACHE_DIR``, else ``./<default_name>``, else (when that is not
    writable) ``<user cache dir>/hypersonic/<default_name without leading _>``.

    Raises TypeError/ValueError naming ``cache_dir`` or ``default_name`` for bad arguments.
    """
    return _cache_roots(cache_dir, default_name)[0]


# --- keys --------------------------------------------------------------------------------------

def _source_files() -> List[Path]:
    return sorted(p for p in CSRC_DIR.iterdir() if p.suffix in (".c", ".h") and p.is_file())


def _sha256() -> Any:
    """A SHA-256 object from CPython's built-in implementation when it has one.

    hashlib would load OpenSSL's libcrypto (several MiB of resident memory in
    every worker forked after the key is computed) for one small digest.
    """
    for module_name in ("_sha2", "_sha256"):  # 3.12+, then 3.9-3.11
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        return module.sha256()
    import hashlib

    return hashlib.sha256()


def _digest(parts: List[Tuple[str, Union[str, bytes]]]) -> str:
    h = _sha256()
    for label, data in parts:
        raw = data.encode() if isinstance(data, str) else data
        h.update(f"{label}\0{len(raw)}\0".encode())
        h.update(raw)
    digest: str = h.hexdigest()
    return digest[:KEY_HEX_DIGITS]


def _source_key(main: str, generated: Mapping[str, str], flags: List[str]) -> str:
    parts: List[Tuple[str, Union[str, bytes]]] = [("main", main)]
    parts += [("src:" + p.name, p.read_bytes()) for p in _source_files()]
    parts += [("gen:" + name, generated[name]) for name in sorted(generated)]
    parts += [
        ("version", __version__),
        ("abi", "\0".join([sys.implementation.cache_tag or "", ext_suffix(), getattr(sys, "abiflags", ""),
                           sys.version])),
        ("platform", f"{sys.platform} {os.uname().machine}"),
        ("flags", "\0".join(flags)),
    ]
    return _digest(parts)


def _key(source_key: str, compiler: Compiler) -> str:
    return _digest([("source", source_key), ("compiler", compiler.identity)])


# --- loading -----------------------------------------------------------------------------------

def _identity(path: Path) -> Optional[Tuple[int, int, int, int]]:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _try_load(name: str, path: Path) -> Tuple[Optional[ModuleType], Optional[str]]:
    """(module, None) on success; (None, None) when absent; (None, reason) when it fails to load."""
    if not path.is_file():
        return None, None
    import importlib.machinery
    import importlib.util

    try:
        loader = importlib.machinery.ExtensionFileLoader(name, str(path))
        spec = importlib.util.spec_from_file_location(name, str(path), loader=loader)
        if spec is None:  # pragma: no cover - only for unknown suffixes
            return None, "no import spec"
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        return module, None
    except ImportError as exc:
        return None, str(exc)


def _check_generated(generated: object) -> Dict[str, str]:
    if generated is None:
        return {}
    if not isinstance(generated, Mapping):
        raise TypeError(f"generated must be a mapping of file name -> C text, not {type(generated).__name__}")
    out: Dict[str, str] = {}
    for fname, text in generated.items():
        _check_plain_name(fname, "generated file name")
        if not isinstance(text, str):
            raise TypeError(f"generated[{fname!r}] must be str C text, not {type(text).__name__}")
        out[fname] = text
    return out


def _define_flags(defines: object) -> List[str]:
    if defines is None:
        return []
    if not isinstance(defines, Mapping):
        raise TypeError(f"defines must be a mapping of macro name -> value or None, not {type(defines).__name__}")
    for macro in defines:
        if not isinstance(macro, str) or not _C_IDENTIFIER.match(macro):
            raise ValueError(f"defines: {macro!r} is not a C identifier")
    flags = []
    for macro in sorted(defines):
        value = defines[macro]
        if value is None:
            flags.append(f"-D{macro}")
        elif isinstance(value, (str, int)) and not isinstance(value, bool):
            flags.append(f"-D{macro}={value}")
        else:
            raise TypeError(f"defines[{macro!r}] must be str, int or None, not {type(value).__name__}")
    return flags


def load_extension(
    main: str,
    *,
    default_cache_name: str,
    cache_dir: Optional[PathLike] = None,
    generated: Optional[Mapping[str, str]] = None,
    defines: Optional[Mapping[str, Optional[str]]] = None,
) -> ModuleType:
    """Build (or load from cache) the extension whose top translation unit is ``main``.

    main: a file in csrc/ (or in ``generated``) that the generated top file
        ``#include``\\ s; it must define ``PyMODINIT_FUNC HS_PYINIT(void)``.
    default_cache_name: directory name used in the current directory when
        neither ``cache_dir`` nor $HYPERSONIC_CACHE_DIR is given.
    generated: extra files (name -> text) written beside the top file and found
        by ``#include "name"`` before csrc/; part of the cache key.
    defines: -D macros (value None for a bare -DNAME); part of the cache key.

    The module is named ``_hs_<key>``; the C gets -DHS_MODULE_NAME=<that name>.
    Raises CompilerNotFound (no compiler or no Python.h, and no prebuilt module),
    CompileError (the compiler failed), OSError (cache dir not writable and no
    module for this compiler or prebuilt one in it),
    TypeError/ValueError naming the bad argument.
    """
    generated_files = _check_generated(generated)
    _check_plain_name(main, "main")
    if main not in generated_files and not (CSRC_DIR / main).is_file():
        raise ValueError(f"main {main!r} is neither a file in {CSRC_DIR} nor a key of generated")
    flags = [*base_cflags(), *_define_flags(defines), *extra_cflags()]
    write_root, lookup_roots = _cache_roots(cache_dir, default_cache_name)
    source_key = _source_key(main, generated_files, flags)

    with _process_lock:
        try:
            compiler = find_compiler()
        except CompilerNotFound as exc:
            module = _load_prebuilt(main, source_key, lookup_roots)
            if module is None:
                roots = ", ".join(str(r) for r in lookup_roots)
                raise CompilerNotFound(f"{exc}\n(No prebuilt module for this source, Python and flags in {roots}.)") \
                    from None
            return module
        key = _key(source_key, compiler)
        if key in _loaded:
            return _loaded[key]
        name = f"_hs_{key}"
        file_name = name + ext_suffix()
        failed: Optional[Tuple[int, int, int, int]] = None
        for root in lookup_roots:
            path = root / file_name
            ident = _identity(path)
            module, reason = _try_load(name, path)
            if module is not None:
                return _remember(key, module, LoadRecord(main, name, path, built=False))
            if reason is not None and root == write_root:
                failed = ident
                log.debug("cached module %s failed to load: %s", path, reason)
        try:
            module, built = _build_locked(compiler, main, generated_files, [*flags, f"-DHS_MODULE_NAME={name}"],
                                          name, write_root, failed)
        except CacheNotWritable:
            # A read-only cache prebuilt by another compiler (version) still fits this Python.
            module = _load_prebuilt(main, source_key, lookup_roots)
            if module is None:
                raise
            log.warning("cannot build %s in %s; using the module prebuilt there by another compiler", main,
                        write_root)
            return module
        _write_index(write_root, source_key, file_name)
        return _remember(key, module, LoadRecord(main, name, write_root / file_name, built=built))


def _remember(key: str, module: ModuleType, record: LoadRecord) -> ModuleType:
    _loaded[key] = module
    _history.append(record)
    log.debug("%s %s (%s)", "built" if record.built else "loaded", record.path, record.main)
    return module


def _load_prebuilt(main: str, source_key: str, roots: List[Path]) -> Optional[ModuleType]:
    """With no compiler: the module some compiler built from this exact source, Python and flags."""
    memo = "source:" + source_key
    if memo in _loaded:
        return _loaded[memo]
    for root in roots:
        try:
            file_name = (root / (INDEX_PREFIX + source_key)).read_text(encoding="utf-8").strip()
        except OSError:
            continue
        match = _module_file_pattern().match(file_name)
        if match is None:
            continue
        module, reason = _try_load(match.group(1), root / file_name)
        if module is not None:
            log.info("no C compiler found; using prebuilt %s", root / file_name)
            return _remember(memo, module, LoadRecord(main, match.group(1), root / file_name, built=False))
        if reason is not None:
            warnings.warn(f"hypersonic: prebuilt module {root / file_name} failed to load ({reason})",
                          RuntimeWarning, stacklevel=3)
    return None


def _write_index(root: Path, source_key: str, file_name: str) -> None:
    index = root / (INDEX_PREFIX + source_key)
    try:
        if index.is_file() and index.read_text(encoding="utf-8").strip() == file_name:
            return
        tmp = root / f".{index.name}.{os.getpid()}.tmp"
        tmp.write_text(file_name + "\n", encoding="utf-8")
        os.replace(tmp, index)
    except OSError as exc:  # the index is a convenience for compiler-less hosts only
        log.debug("could not write %s: %s", index, exc)


# --- building ----------------------------------------------------------------------------------

class CacheNotWritable(OSError):
    """The cache root cannot be written (to build into) and holds no loadable module."""


def _open_lock(root: Path, file_name: str) -> TextIO:
    try:
        root.mkdir(parents=True, exist_ok=True)
        return open(root / LOCK_FILE_NAME, "a")
    except OSError as exc:
        raise CacheNotWritable(
            exc.errno,
            f"hypersonic: cache dir {root} is not writable ({exc.strerror or exc}) and holds no loadable "
            f"{file_name}. Prebuild it with `python -m hypersonic.jit prebuild --cache-dir {root}` using the "
            f"same Python, compiler and ${EXTRA_CFLAGS_ENV}, or set ${CACHE_DIR_ENV} to a writable directory.",
        ) from None


def _acquire(lock_file: TextIO, path: Path) -> None:
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    pause = LOCK_POLL_MIN_SECONDS
    while True:
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"hypersonic: waited {LOCK_WAIT_SECONDS}s for the cache lock {path}; "
                               "another process holds it (a stuck build?)")
        time.sleep(pause)
        pause = min(pause * 2, LOCK_POLL_MAX_SECONDS)


def _build_locked(compiler: Compiler, main: str, generated: Mapping[str, str], flags: List[str], name: str,
                  root: Path, failed: Optional[Tuple[int, int, int, int]]) -> Tuple[ModuleType, bool]:
    """Under the root's flock: re-check, clean stale builds, build, publish, load. (module, built)."""
    target = root / (name + ext_suffix())
    with _open_lock(root, target.name) as lock_file:
        _acquire(lock_file, root / LOCK_FILE_NAME)  # released when the file is closed
        ident = _identity(target)
        if ident is not None and ident != failed:  # published (or replaced) by another process meanwhile
            module, reason = _try_load(name, target)
            if module is not None:
                return module, False
            failed = ident
        if failed is not None:
            warnings.warn(f"hypersonic: cached module {target} failed to load; rebuilding it", RuntimeWarning,
                          stacklevel=3)
        _clean_stale_builds(root)
        _build(compiler, main, generated, flags, name, root, target)
        module, reason = _try_load(name, target)
        if module is None:
            raise ImportError(f"hypersonic: freshly built module {target} failed to load: {reason}", path=str(target))
        return module, True


def _clean_stale_builds(root: Path) -> None:
    """Remove crashed builds (no FAILED marker: no build runs while we hold the lock) and old failed ones."""
    kept: List[Tuple[float, Path]] = []
    try:
        entries = [Path(e.path) for e in os.scandir(root) if e.name.startswith(BUILD_DIR_PREFIX) and e.is_dir()]
    except OSError as exc:
        log.debug("cannot list %s: %s", root, exc)
        return
    now = time.time()
    for path in entries:
        marker = path / FAILED_MARKER
        try:
            mtime = marker.stat().st_mtime
        except OSError:
            log.debug("removing crashed build dir %s", path)
            shutil.rmtree(path, ignore_errors=True)
            continue
        if now - mtime > KEPT_FAILED_BUILD_SECONDS:
            shutil.rmtree(path, ignore_errors=True)
        else:
            kept.append((mtime, path))
    kept.sort(reverse=True)
    for _, path in kept[MAX_KEPT_FAILED_BUILDS - 1:]:  # leave room for the build about to run
        shutil.rmtree(path, ignore_errors=True)


def _build(compiler: Compiler, main: str, generated: Mapping[str, str], flags: List[str], name: str,
           root: Path, target: Path) -> None:
    import tempfile

    build_dir = Path(tempfile.mkdtemp(prefix=f"{BUILD_DIR_PREFIX}{name}-", dir=root))
    for fname, text in generated.items():
        (build_dir / fname).write_text(text, encoding="utf-8")
    top = build_dir / f"{name}.c"
    top.write_text(f"/* generated by hypersonic.jit: the top translation unit of {name} */\n"
                   f'#include "{main}"\n', encoding="utf-8")
    out = build_dir / target.name
    include_path = [build_dir, CSRC_DIR]
    cmd = compiler.command([*flags, *(f"-I{p}" for p in include_path)], top, out)
    (build_dir / "build.sh").write_text(
        f"#!/bin/sh\n# Re-runs the compile of {name} (hypersonic.jit); sources: this dir, then {CSRC_DIR}\n"
        f"set -e\n{shlex.join(cmd)}\n", encoding="utf-8")
    log.info("compiling %s: %s", main, shlex.join(cmd))
    try:
        output = run_compiler(cmd, top, [*include_path, Path(compiler.python_include)])
    except CompileError as exc:
        (build_dir / FAILED_MARKER).write_text(f"{exc}\n", encoding="utf-8")
        raise
    if output:
        log.warning("compiler output for %s (%s):\n%s", main, name, output)
    os.replace(out, target)
    shutil.rmtree(build_dir, ignore_errors=True)
