"""Running without a compiler (docs/OPERATIONS.md): the prebuilt cache, the
pure-Python fallback with one warning, HYPERSONIC_JIT=1 and =0.

"Container-like": the server runs with CC pointing at a path that does not
exist and PATH reduced to an empty directory, so no compiler can be found;
every cache directory is fresh (tmp_path), so nothing was built before unless
the test prebuilt it. The behaviour tests of the server run against the Python
path with ``HYPERSONIC_JIT=0 pytest tests/test_server_*.py`` (see OPERATIONS.md).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from _ops_util import CliServer, base_env, get, write_module
from hypersonic import Hypersonic, _pyserver
from hypersonic.jit import CompilerNotFound

APP = """
    from hypersonic import Hypersonic

    app = Hypersonic()

    @app.get("/")
    def index():
        return "static ok"

    @app.get("/backend")
    def backend(req):
        return {"backend": app.backend(), "calls": app.stats()["python_calls"]}
"""

#: The "no compiler here" part of the environment.
WARNING = "no native code"


def _no_compiler_env(tmp_path: Path, cache: Path, **extra: str) -> Dict[str, str]:
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir(exist_ok=True)
    return {"CC": str(tmp_path / "no-such-compiler" / "cc"), "PATH": str(empty_bin),
            "HYPERSONIC_CACHE_DIR": str(cache), **extra}


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_module(tmp_path, "nocc", APP)
    return tmp_path


def _backend(server: CliServer) -> str:
    import json

    status, body = get(server.address, "/backend")
    assert status == 200, body
    return str(json.loads(body)["backend"])


def test_prebuilt_cache_serves_natively_with_the_compiler_hidden(app_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "shipped-cache"
    built = subprocess.run([sys.executable, "-m", "hypersonic", "prebuild", "nocc:app", "--cache-dir", str(cache)],
                           cwd=app_dir, env=base_env(), capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr
    assert "app nocc:app" in built.stdout and "hs_servermod.c" in built.stdout
    env = _no_compiler_env(tmp_path, cache)
    with CliServer(app_dir, "nocc:app", "--workers", "2", env=env) as server:
        assert get(server.address, "/") == (200, b"static ok")
        assert _backend(server) != _pyserver.BACKEND_NAME
        assert WARNING not in server.output()
    # The same environment really has no compiler: HYPERSONIC_JIT=1 with an empty cache fails.
    empty = tmp_path / "empty-cache"
    failed = subprocess.run([sys.executable, "-m", "hypersonic", "nocc:app", "--port", "0"], cwd=app_dir,
                            env=base_env(_no_compiler_env(tmp_path, empty, HYPERSONIC_JIT="1")),
                            capture_output=True, text=True, timeout=120, check=False)
    assert failed.returncode == 1, failed.stderr


def test_without_compiler_or_prebuild_serves_on_python_with_one_warning(app_dir: Path, tmp_path: Path) -> None:
    env = _no_compiler_env(tmp_path, tmp_path / "fresh-cache")
    with CliServer(app_dir, "nocc:app", "--workers", "2", env=env) as server:
        assert get(server.address, "/") == (200, b"static ok")
        assert _backend(server) == _pyserver.BACKEND_NAME
        log = server.output()
    assert log.count(WARNING) == 1, log
    assert "hypersonic prebuild" in log and "C compiler" in log  # names the fix
    assert "backend=python" in log


def test_jit_1_without_compiler_fails_with_the_actionable_error(app_dir: Path, tmp_path: Path) -> None:
    env = base_env(_no_compiler_env(tmp_path, tmp_path / "fresh-cache", HYPERSONIC_JIT="1"))
    result = subprocess.run([sys.executable, "-m", "hypersonic", "nocc:app", "--port", "0"], cwd=app_dir, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "found no working C compiler" in result.stderr
    assert "Fix: install a C compiler" in result.stderr
    assert WARNING not in result.stderr


def test_jit_0_forces_the_python_server_even_with_a_compiler(app_dir: Path) -> None:
    with CliServer(app_dir, "nocc:app", env={"HYPERSONIC_JIT": "0"}) as server:
        assert _backend(server) == _pyserver.BACKEND_NAME
        assert WARNING not in server.output()


def test_prebuild_of_a_missing_app_fails(app_dir: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "hypersonic", "prebuild", "no_such_module:app"], cwd=app_dir,
                            env=base_env(), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "no_such_module" in result.stderr


def _raise_not_found(*_args: Any, **_kwargs: Any) -> Any:
    raise CompilerNotFound("no compiler (test stand-in)")


def test_fallback_warns_once_per_process(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("HYPERSONIC_JIT", raising=False)
    monkeypatch.setattr(_pyserver, "_warned", False)
    caplog.set_level(logging.WARNING, logger="hypersonic")
    for _ in range(2):
        module = _pyserver.load_server_module([], "", b"", "text/plain", "application/json", cache_dir=None,
                                              defines={}, load_extension=_raise_not_found)
        assert isinstance(module, _pyserver.PyServerModule)
        assert module.backend() == "python"
    warnings = [r for r in caplog.records if WARNING in r.getMessage()]
    assert len(warnings) == 1
    assert "no compiler (test stand-in)" in warnings[0].getMessage()


def test_fallback_refused_when_native_is_demanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERSONIC_JIT", "1")
    with pytest.raises(CompilerNotFound, match="test stand-in"):
        _pyserver.load_server_module([], "", b"", "text/plain", "application/json", cache_dir=None, defines={},
                                     load_extension=_raise_not_found)


def test_python_server_app_reports_python_backend_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERSONIC_JIT", "0")
    app = Hypersonic()
    app.get("/", lambda: "x")
    app.compile()
    assert app.backend() == "python"
    assert app.stats()["requests"] == 0


#: Server behaviour suites run again against the pure-Python server (HYPERSONIC_JIT=0 is inherited by
#: every test server they start), so the two implementations meet the same expectations.
PYTHON_PATH_SUITES = ("tests/test_server_http.py", "tests/test_server_lifecycle.py", "tests/test_server_api.py")


def test_server_behaviour_suites_pass_on_the_python_server() -> None:
    root = Path(__file__).resolve().parent.parent
    env = base_env({"HYPERSONIC_JIT": "0"})
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                             *PYTHON_PATH_SUITES], cwd=root, env=env, capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
