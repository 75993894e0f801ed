"""deploy/Containerfile's commands work: run outside a container (no runtime on CI).

The test reads the recipe itself, so it cannot drift from it: it installs the
repository into a fresh virtual environment as the image's `pip install` does,
copies the example app where the image puts it, runs the image's prebuild
`RUN` command with the image's HYPERSONIC_CACHE_DIR, then starts the image's
`CMD` (host and port swapped for a free loopback port) with the C compiler
hidden, as in a slim runtime image: the app must be served natively from the
prebuilt cache, and SIGTERM must drain and exit 0. Not covered: apt-get,
useradd and the container runtime itself.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Dict, List

import pytest

from _server_util import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "deploy" / "Containerfile"


def _instructions() -> List[tuple]:
    """(INSTRUCTION, argument) pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in RECIPE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            word, _, rest = pending.partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


@pytest.fixture(scope="module")
def recipe() -> Dict[str, object]:
    steps = _instructions()
    env = dict(arg.split("=", 1) for word, arg in steps if word == "ENV")
    prebuild = next(arg for word, arg in steps if word == "RUN" and "prebuild" in arg)
    cmd = next(json.loads(arg) for word, arg in steps if word == "CMD")
    workdir = next(arg for word, arg in steps if word == "WORKDIR")
    app_copy = next(arg.split() for word, arg in steps if word == "COPY" and arg.startswith("examples/"))
    return {"env": env, "prebuild": prebuild.split("&&")[0].strip(), "cmd": cmd, "workdir": workdir,
            "app_copy": app_copy}


def test_container_recipe_prebuilds_then_serves_without_a_compiler(recipe: Dict[str, object], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    subprocess.run([str(bin_dir / "pip"), "install", "-q", "--no-cache-dir", str(ROOT)], check=True, timeout=600)

    # WORKDIR and the app COPY, re-rooted under tmp_path.
    workdir = tmp_path / str(recipe["workdir"]).lstrip("/")
    workdir.mkdir(parents=True)
    source, dest = recipe["app_copy"]  # type: ignore[misc]
    shutil.copy(ROOT / source, tmp_path / dest.lstrip("/"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERSONIC_")}
    for key, value in recipe["env"].items():  # type: ignore[union-attr]
        env[key] = str(tmp_path / value.lstrip("/")) if value.startswith("/") else value
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"

    built = subprocess.run(shlex.split(str(recipe["prebuild"])), cwd=workdir, env=env, capture_output=True,
                           text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr

    # The runtime: no compiler anywhere (CC points nowhere, PATH has only the venv).
    runtime_env = dict(env, CC=str(tmp_path / "no-compiler"), PATH=str(bin_dir), HYPERSONIC_JIT="1")
    cmd = list(recipe["cmd"])  # type: ignore[arg-type]
    port = free_port()
    cmd[cmd.index("--host") + 1] = "127.0.0.1"
    cmd[cmd.index("--port") + 1] = str(port)
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, env=runtime_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for_port(port, proc=proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert resp.status == 200
            assert resp.read() == b"Hello, World!"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    output = log_path.read_text()
    assert "backend=epoll" in output or "backend=kqueue" in output, output
    assert "compiling" not in output, output
