"""The C is warning-free: every JIT module builds with -Wall -Wextra -Werror under gcc and clang.

Each build runs in a fresh process with a fresh cache dir, so the modules are
really compiled (not loaded from a cache), with the same flags the JIT always
uses plus -Werror; any warning becomes a CompileError and fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BUILD_ALL = r"""
import hypersonic.socket as hs
from hypersonic import Hypersonic

for backend in ("epoll", "poll") if hs.platform() == "linux" else ("kqueue", "poll"):
    hs.load(backend)

app = Hypersonic()
app.get("/static", lambda: "baked")
app.get("/users/:id", lambda req: req.param("id"))
app.post("/echo", lambda req: req.body)
app.get("/gzip", lambda: "a baked gzip variant " * 100)  # HS_ROUTE_STATIC_GZIP in the generated table
app.compress()
app.compile()
print("built")
"""

COMPILERS = [name for name in ("gcc", "clang") if shutil.which(name)]


@pytest.mark.parametrize("compiler", COMPILERS or ["cc"])
def test_every_module_compiles_without_warnings(compiler: str, tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(CC=compiler, HYPERSONIC_JIT_CFLAGS="-Werror", HYPERSONIC_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("HYPERSONIC_JIT", None)
    env.pop("HYPERSONIC_EVENT_BACKEND", None)
    res = subprocess.run([sys.executable, "-c", BUILD_ALL], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "built" in res.stdout
