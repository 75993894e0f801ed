"""Finding a C compiler and the Python headers, and running the compiler.

Discovery order (DESIGN.md, JIT): ``$CC`` when set and non-empty (an explicit
choice: no silent fallback to another compiler), else sysconfig's ``CC``, else
``cc``, ``gcc``, ``clang`` on ``PATH``. A candidate counts only when
``<compiler> --version`` runs and exits 0. ``Python.h`` must exist in the
interpreter's include directory. Failing either raises one exception type,
:class:`CompilerNotFound`, whose message lists what was tried and the fix for
the current OS.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from functools import lru_cache
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

__all__ = ["Compiler", "CompileError", "CompilerNotFound", "find_compiler", "run_compiler"]

#: Seconds allowed for ``<compiler> --version`` when probing a candidate.
PROBE_TIMEOUT_SECONDS = 30
#: Seconds allowed for one compilation (it runs while holding the cache lock).
COMPILE_TIMEOUT_SECONDS = 600


class CompilerNotFound(RuntimeError):
    """No usable C compiler or no Python headers: native code cannot be built."""


class CompileError(RuntimeError):
    """The C compiler rejected the source (or could not be run to completion).

    Attributes: ``command`` (argv list), ``output`` (compiler stdout+stderr),
    ``source_path`` (the kept top-level source; its directory also holds the
    generated files and a ``build.sh`` that re-runs the command),
    ``include_path`` (the ``-I`` directories, in search order).
    """

    def __init__(self, command: Sequence[str], output: str, source_path: Path,
                 include_path: Sequence[Path] = ()) -> None:
        self.command = list(command)
        self.output = output
        self.source_path = Path(source_path)
        self.include_path = [Path(p) for p in include_path]
        includes = "".join(f"\n  {p}" for p in self.include_path)
        super().__init__(
            f"C compilation failed.\ncommand: {shlex.join(self.command)}\n"
            f"source kept at: {self.source_path} (re-run: sh {self.source_path.parent / 'build.sh'})\n"
            f"include path:{includes or ' (none)'}\n"
            f"compiler output:\n{output}"
        )


_FIX_BY_OS = {
    "linux": ("Debian/Ubuntu: apt-get install gcc python3-dev; Fedora/RHEL: dnf install gcc python3-devel; "
              "Alpine: apk add build-base python3-dev; Arch: pacman -S gcc"),
    "darwin": "macOS: xcode-select --install (the Command Line Tools provide clang)",
    "freebsd": "FreeBSD: clang is in the base system; pkg install python3 provides the headers",
    "openbsd": "OpenBSD: clang is in the base system; pkg_add python provides the headers",
    "netbsd": "NetBSD: gcc is in the base system (comp set); pkgin install python3 provides the headers",
}


def fix_hint(platform: Optional[str] = None) -> str:
    """How to install a C compiler and the Python headers on ``platform`` (default: this one)."""
    plat = sys.platform if platform is None else platform
    for key, hint in _FIX_BY_OS.items():
        if plat.startswith(key):
            return hint
    return "; ".join(_FIX_BY_OS.values())


class Compiler(NamedTuple):
    """A working C compiler.

    ``argv``: the command prefix (``CC`` may carry flags, e.g. ``gcc -pthread``),
    with the executable resolved to an absolute path; ``path``: its real path;
    ``version``: the first output of ``--version``; ``python_include``: the
    directory holding ``Python.h``.
    """

    argv: Tuple[str, ...]
    path: str
    version: str
    python_include: str

    @property
    def identity(self) -> str:
        """Everything about the compiler that can change the produced binary (part of the cache key)."""
        return "\0".join([*self.argv, self.path, self.version, self.python_include])

    def command(self, flags: Sequence[str], source: Path, output: Path) -> List[str]:
        """The argv compiling ``source`` into the shared object ``output`` with ``flags``."""
        return [*self.argv, *flags, f"-I{self.python_include}", str(source), "-o", str(output)]


def _candidates() -> List[Tuple[str, List[str]]]:
    """Compiler command candidates in priority order, each ``(origin, argv)``."""
    import sysconfig

    env_cc = os.environ.get("CC", "").strip()
    if env_cc:
        # An explicit CC is a choice, not a hint: do not silently use another compiler.
        return [("$CC", shlex.split(env_cc))]
    out: List[Tuple[str, List[str]]] = []
    sys_cc = sysconfig.get_config_var("CC")
    if sys_cc:
        out.append(("sysconfig CC", shlex.split(sys_cc)))
    for name in ("cc", "gcc", "clang"):
        out.append(("PATH", [name]))
    return out


def _resolve_executable(name: str) -> Optional[str]:
    if os.sep in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name)


@lru_cache(maxsize=None)
def _probe(argv: Tuple[str, ...], search_path: str) -> Tuple[Optional[Tuple[str, ...]], str, str]:
    """Run ``argv --version``. Returns (resolved argv or None, version text, why-not)."""
    import subprocess

    del search_path  # part of the lru_cache key only: a changed PATH re-probes
    if not argv:
        return None, "", "empty command"
    exe = _resolve_executable(argv[0])
    if exe is None:
        return None, "", "not found" if os.sep not in argv[0] else "no such executable"
    try:
        res = subprocess.run([exe, *argv[1:], "--version"], capture_output=True, text=True,
                             timeout=PROBE_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, "", f"'--version' did not answer in {PROBE_TIMEOUT_SECONDS}s"
    except OSError as exc:
        return None, "", f"cannot run ({exc.strerror or exc})"
    if res.returncode != 0:
        return None, "", f"'--version' exited with status {res.returncode}"
    version = (res.stdout or res.stderr).strip()
    return (exe, *argv[1:]), version, ""


def python_include_dir() -> Path:
    """The directory that must hold ``Python.h`` for this interpreter."""
    import sysconfig

    return Path(sysconfig.get_paths().get("include") or "")


def find_compiler() -> Compiler:
    """Return the compiler to use ($CC, else sysconfig's CC, else cc/gcc/clang on PATH).

    Raises :class:`CompilerNotFound`, listing what was tried and how to install
    one, when none works or when ``Python.h`` is missing.
    """
    tried: List[str] = []
    found: Optional[Tuple[Tuple[str, ...], str]] = None
    search_path = os.environ.get("PATH", "")
    for origin, candidate in _candidates():
        resolved, version, why_not = _probe(tuple(candidate), search_path)
        shown = shlex.join(candidate) or "(empty)"
        tried.append(f"{origin}: {shown} -> " + (f"ok ({resolved[0]})" if resolved else why_not))
        if resolved:
            found = (resolved, version)
            break
    if found is None:
        note = ("\n(CC is set, so no other compiler was tried; unset CC to search sysconfig's CC and PATH.)"
                if os.environ.get("CC", "").strip() else f"\n(PATH searched: {search_path or '(empty)'})")
        raise CompilerNotFound(
            "Hypersonic compiles its C at run time and found no working C compiler.\n"
            "Tried:\n  " + "\n  ".join(tried) + note + "\n"
            f"Fix: install a C compiler and the Python headers ({fix_hint()}), "
            "or set CC to a working compiler. A cache prebuilt elsewhere "
            "(python -m hypersonic.jit prebuild) is used when no compiler is present. "
            "To run without native code, set HYPERSONIC_JIT=0."
        )
    argv, version = found
    include = python_include_dir()
    if not (include / "Python.h").is_file():
        raise CompilerNotFound(
            f"Hypersonic found a C compiler ({argv[0]}) but not the Python headers: "
            f"{include / 'Python.h'} does not exist.\n"
            f"Fix: install the Python development headers for Python "
            f"{sys.version_info.major}.{sys.version_info.minor} ({fix_hint()})."
        )
    return Compiler(argv=argv, path=os.path.realpath(argv[0]), version=version, python_include=str(include))


def run_compiler(cmd: Sequence[str], source: Path, include_path: Sequence[Path] = ()) -> str:
    """Run one compile command. Returns the compiler's output (warnings) on success;
    raises :class:`CompileError` with its output on failure or timeout."""
    import subprocess

    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             timeout=COMPILE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as exc:
        partial = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise CompileError(cmd, f"(compiler timed out after {COMPILE_TIMEOUT_SECONDS}s)\n{partial}".strip(),
                           source, include_path) from None
    except OSError as exc:
        raise CompileError(cmd, f"(compiler could not be run: {exc})", source, include_path) from None
    output = (res.stdout + res.stderr).strip()
    if res.returncode != 0:
        raise CompileError(cmd, output or f"(compiler exited with status {res.returncode}, no output)",
                           source, include_path)
    return output
