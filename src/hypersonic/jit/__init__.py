"""Run-time C compilation: compiler discovery, a content-addressed cache, loading.

Public entry point: :func:`load_extension`. Every native module of Hypersonic
(the socket ops, each compiled app) is one C translation unit in
``hypersonic/csrc`` that ``#include``\\ s the ``.c`` files it needs, plus optional
app-specific generated files. The module is built once per distinct
(source, package version, Python ABI, platform, compiler, flags) and cached
on disk as ``_hs_<hash><EXT_SUFFIX>``; see :mod:`hypersonic.jit.cache` for the
cache layout and locking, and ``python -m hypersonic.jit --help`` for the
prebuild command.

Environment: ``CC`` (compiler), ``HYPERSONIC_CACHE_DIR`` (cache root),
``HYPERSONIC_JIT_CFLAGS`` (extra compiler flags, e.g. sanitizers).
Importing this package runs nothing: no compiler probe, no file access.
"""

from __future__ import annotations

from .cache import CSRC_DIR, CacheNotWritable, LoadRecord, base_cflags, load_extension, loaded_history, resolve_cache_dir
from .compiler import Compiler, CompileError, CompilerNotFound, find_compiler

__all__ = [
    "CSRC_DIR",
    "CacheNotWritable",
    "CompileError",
    "Compiler",
    "CompilerNotFound",
    "LoadRecord",
    "base_cflags",
    "find_compiler",
    "load_extension",
    "loaded_history",
    "resolve_cache_dir",
]
