"""Run-time C compilation: compiler discovery, a content-addressed cache, loading.

Public entry point: :func:`load_extension`. Every native module of Hypersonic
(the socket ops, each compiled app) is one C translation unit in
``hypersonic/csrc`` that ``#include``\\ s the ``.c`` files it needs, plus optional
app-specific generated headers. The module is built once per distinct
(source, package version, Python ABI, platform, compiler, flags) and cached
on disk as ``_hs_<hash><EXT_SUFFIX>``.
"""

from __future__ import annotations

from .compiler import Compiler, CompileError, CompilerNotFound, find_compiler
from .cache import CSRC_DIR, load_extension, resolve_cache_dir

__all__ = [
    "CSRC_DIR",
    "CompileError",
    "Compiler",
    "CompilerNotFound",
    "find_compiler",
    "load_extension",
    "resolve_cache_dir",
]
