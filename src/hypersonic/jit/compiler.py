"""Finding a C compiler and the Python headers, and running the compiler."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Sequence

__all__ = ["Compiler", "CompileError", "CompilerNotFound", "find_compiler"]


class CompilerNotFound(RuntimeError):
    """No usable C compiler or no Python headers: native code cannot be built."""


class CompileError(RuntimeError):
    """The C compiler rejected the source. Carries the command, its output and the kept source."""

    def __init__(self, command: Sequence[str], output: str, source_path: Path) -> None:
        self.command = list(command)
        self.output = output
        self.source_path = source_path
        super().__init__(
            f"C compilation failed.\ncommand: {shlex.join(self.command)}\n"
            f"source kept at: {source_path}\ncompiler output:\n{output}"
        )


_FIX_BY_OS = {
    "linux": "Debian/Ubuntu: apt-get install gcc python3-dev; Fedora/RHEL: dnf install gcc python3-devel; Alpine: apk add build-base python3-dev",
    "darwin": "macOS: xcode-select --install (Command Line Tools provide clang)",
    "freebsd": "FreeBSD: clang is in the base system; pkg install python3 for headers",
}


def _fix_hint() -> str:
    plat = sys.platform
    for key, hint in _FIX_BY_OS.items():
        if plat.startswith(key):
            return hint
    return "; ".join(_FIX_BY_OS.values())


@dataclass(frozen=True)
class Compiler:
    """A working C compiler: argv prefix (CC may carry flags), resolved path, identity."""

    argv: tuple
    path: str
    version: str
    python_include: str

    def command(self, flags: Sequence[str], source: Path, output: Path) -> List[str]:
        return [*self.argv, *flags, f"-I{self.python_include}", str(source), "-o", str(output)]


def _candidates() -> List[tuple]:
    """Compiler command candidates in priority order, each (origin, argv)."""
    out: List[tuple] = []
    env_cc = os.environ.get("CC")
    if env_cc is not None:
        out.append(("$CC", shlex.split(env_cc)))
        return out  # an explicit CC is a choice, not a hint: do not silently fall back
    sys_cc = sysconfig.get_config_var("CC")
    if sys_cc:
        out.append(("sysconfig CC", shlex.split(sys_cc)))
    for name in ("cc", "gcc", "clang"):
        out.append(("PATH", [name]))
    return out


@lru_cache(maxsize=None)
def _probe(argv: tuple) -> Optional[tuple]:
    if not argv:
        return None
    exe = shutil.which(argv[0]) if os.sep not in argv[0] else (argv[0] if os.access(argv[0], os.X_OK) else None)
    if exe is None:
        return None
    try:
        res = subprocess.run([exe, *argv[1:], "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    return os.path.realpath(exe), (res.stdout or res.stderr).strip()


def find_compiler() -> Compiler:
    """Return the compiler to use ($CC, else sysconfig's CC, else cc/gcc/clang on PATH).

    Raises CompilerNotFound, listing what was tried and how to install one,
    when none works or when Python.h is missing.
    """
    tried = []
    found = None
    for origin, argv in _candidates():
        probe = _probe(tuple(argv))
        tried.append(f"{origin}: {shlex.join(argv) or '(empty)'} -> {'ok' if probe else 'not found / not runnable'}")
        if probe:
            found = (tuple(argv), probe)
            break
    include = sysconfig.get_paths().get("include") or ""
    if found is None:
        raise CompilerNotFound(
            "Hypersonic compiles its C at run time and found no C compiler.\n"
            "Tried:\n  " + "\n  ".join(tried) + "\n"
            f"Fix: install a C compiler and the Python headers ({_fix_hint()}), "
            "or set CC to a compiler's path. To run without native code, set HYPERSONIC_JIT=0."
        )
    if not (Path(include) / "Python.h").is_file():
        raise CompilerNotFound(
            f"Hypersonic found a C compiler ({found[1][0]}) but not the Python headers: "
            f"{Path(include) / 'Python.h'} does not exist.\n"
            f"Fix: install the Python development headers ({_fix_hint()})."
        )
    argv, (path, version) = found
    return Compiler(argv=argv, path=path, version=version, python_include=include)


def run_compiler(cmd: Sequence[str], source: Path) -> None:
    """Run one compile command; raise CompileError with its output on failure."""
    res = subprocess.run(list(cmd), capture_output=True, text=True)
    if res.returncode != 0:
        raise CompileError(cmd, (res.stdout + res.stderr).strip(), source)
