"""The on-disk cache of compiled modules: keying, locked build-and-publish, loading."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import platform as _platform
import shlex
import sys
import sysconfig
import tempfile
import warnings
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Mapping, Optional, Sequence, Union

from .._version import __version__
from .compiler import find_compiler, run_compiler

__all__ = ["CSRC_DIR", "load_extension", "resolve_cache_dir", "base_cflags"]

log = logging.getLogger("hypersonic.jit")

#: Directory holding the C sources shipped with the package.
CSRC_DIR = Path(__file__).resolve().parent.parent / "csrc"

PathLike = Union[str, "os.PathLike[str]"]

# Modules loaded in this process, by cache key (a module cannot be loaded twice).
_loaded: Dict[str, ModuleType] = {}


def base_cflags() -> List[str]:
    """Flags every build uses, before HYPERSONIC_JIT_CFLAGS."""
    flags = ["-O2", "-fPIC", "-shared", "-std=gnu11", "-Wall", "-Wextra", "-fvisibility=hidden",
             "-fno-strict-aliasing"]
    if sys.platform == "darwin":
        flags += ["-undefined", "dynamic_lookup"]
    return flags


def _user_cache_dir() -> Path:
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "hypersonic"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "hypersonic"


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def resolve_cache_dir(cache_dir: Optional[PathLike], default_name: str) -> Path:
    """The cache root: argument, else $HYPERSONIC_CACHE_DIR, else ./default_name,
    else (when that is not writable) the user cache dir."""
    if cache_dir is not None:
        if not isinstance(cache_dir, (str, os.PathLike)):
            raise TypeError(f"cache_dir must be a path (str or os.PathLike), not {type(cache_dir).__name__}")
        path = Path(cache_dir)
        if not _writable_dir(path) and not path.is_dir():
            raise OSError(f"cache_dir {str(path)!r} cannot be created")
        return path.resolve()
    env = os.environ.get("HYPERSONIC_CACHE_DIR")
    if env:
        return Path(env).resolve()
    local = Path.cwd() / default_name
    if _writable_dir(local):
        return local
    fallback = _user_cache_dir() / default_name.lstrip("_")
    log.info("cache dir %s is not writable; using %s", local, fallback)
    return fallback


def _source_files() -> List[Path]:
    return sorted(p for p in CSRC_DIR.iterdir() if p.suffix in (".c", ".h"))


def _cache_key(main: str, generated: Mapping[str, str], flags: Sequence[str], compiler_id: str) -> str:
    h = hashlib.sha256()

    def part(label: str, data: Union[str, bytes]) -> None:
        raw = data.encode() if isinstance(data, str) else data
        h.update(f"{label}\0{len(raw)}\0".encode())
        h.update(raw)

    part("main", main)
    for path in _source_files():
        part("src:" + path.name, path.read_bytes())
    for name in sorted(generated):
        part("gen:" + name, generated[name])
    part("version", __version__)
    part("abi", f"{sys.implementation.cache_tag} {sysconfig.get_config_var('EXT_SUFFIX')} {sys.version}")
    part("platform", f"{sys.platform} {_platform.machine()}")
    part("compiler", compiler_id)
    part("flags", "\0".join(flags))
    return h.hexdigest()[:24]


def _try_load(name: str, path: Path) -> Optional[ModuleType]:
    if not path.is_file():
        return None
    try:
        loader = importlib.machinery.ExtensionFileLoader(name, str(path))
        spec = importlib.util.spec_from_file_location(name, str(path), loader=loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        return module
    except ImportError as exc:
        warnings.warn(f"hypersonic: cached module {path} failed to load ({exc}); rebuilding", RuntimeWarning,
                      stacklevel=3)
        return None


def load_extension(
    main: str,
    *,
    default_cache_name: str,
    cache_dir: Optional[PathLike] = None,
    generated: Optional[Mapping[str, str]] = None,
    defines: Optional[Mapping[str, Optional[str]]] = None,
) -> ModuleType:
    """Build (or load from cache) the extension whose top translation unit is csrc/<main>.

    generated: extra files (name -> text) written beside the top file and found
        by ``#include "name"`` before csrc/; part of the cache key.
    defines: -D macros (value None for a bare -DNAME); part of the cache key.
    The module is named ``_hs_<hash>``; the C gets -DHS_MODULE_NAME=<that name>.
    Raises CompilerNotFound / CompileError (see hypersonic.jit.compiler).
    """
    generated = dict(generated or {})
    compiler = find_compiler()
    define_flags = [f"-D{k}" if v is None else f"-D{k}={v}" for k, v in sorted((defines or {}).items())]
    extra = shlex.split(os.environ.get("HYPERSONIC_JIT_CFLAGS", ""))
    flags = [*base_cflags(), *define_flags, *extra]
    key = _cache_key(main, generated, flags, f"{compiler.path}\0{compiler.version}")
    if key in _loaded:
        return _loaded[key]
    name = f"_hs_{key}"
    root = resolve_cache_dir(cache_dir, default_cache_name)
    root.mkdir(parents=True, exist_ok=True)
    target = root / (name + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))

    module = _try_load(name, target)
    if module is None:
        with open(root / f".{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                module = _try_load(name, target)  # another process may have built it meanwhile
                if module is None:
                    _build(compiler, main, generated, [*flags, f"-DHS_MODULE_NAME={name}"], root, target)
                    module = _try_load(name, target)
                    if module is None:
                        raise ImportError(f"freshly built module {target} failed to load")
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    _loaded[key] = module
    return module


def _build(compiler, main: str, generated: Mapping[str, str], flags: List[str], root: Path, target: Path) -> None:
    build_dir = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    top = build_dir / f"{target.stem.split('.')[0]}.c"
    for fname, text in generated.items():
        (build_dir / fname).write_text(text)
    top.write_text(f'/* generated by hypersonic.jit */\n#include "{main}"\n')
    out = build_dir / target.name
    cmd = compiler.command([*flags, f"-I{build_dir}", f"-I{CSRC_DIR}"], top, out)
    log.info("compiling %s", shlex.join(cmd))
    run_compiler(cmd, top)  # on failure the build dir (the source) is kept for inspection
    os.replace(out, target)
    for p in build_dir.iterdir():
        p.unlink()
    build_dir.rmdir()
