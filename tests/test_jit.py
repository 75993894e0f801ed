"""hypersonic.jit: compiler discovery, the on-disk cache, locking, errors, prebuild, sanitizer runner.

Every test builds small throwaway C modules passed through ``generated=`` (so it
does not depend on the project's own C) into a private cache dir. Compiler
invocations are counted through a wrapper script set as ``$CC`` that logs each
call before running the real compiler.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

import hypersonic.jit.cache as jit_cache
import hypersonic.jit.compiler as jit_compiler
from hypersonic.jit import (
    CSRC_DIR,
    CompileError,
    CompilerNotFound,
    find_compiler,
    load_extension,
    loaded_history,
    resolve_cache_dir,
)
from hypersonic.jit.__main__ import PREBUILD_TARGETS
from hypersonic.jit.__main__ import main as jit_main

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SUBPROCESS_TIMEOUT = 180  # seconds; a cold compile takes well under one here
TEST_CACHE_NAME = "_hs_test_cache"
SANITIZER_ENV = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "LD_PRELOAD", "HYPERSONIC_JIT_CFLAGS",
                 "HYPERSONIC_CACHE_DIR", "PYTHONMALLOC")

TOY_TEMPLATE = r"""/* toy module for tests/test_jit.py: %(tag)s */
#include <Python.h>
#include "hs_pymodule.h"

#ifndef TOY_ANSWER
#define TOY_ANSWER 42
#endif

static PyObject *answer(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyLong_FromLong(TOY_ANSWER);
}

static PyMethodDef toy_methods[] = {
    {"answer", answer, METH_NOARGS, "Return TOY_ANSWER (42 unless -DTOY_ANSWER=... is given)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef toy_module = {
    PyModuleDef_HEAD_INIT, HS_MODULE_NAME_STR, NULL, -1, toy_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC HS_PYINIT(void)
{
    return PyModule_Create(&toy_module);
}
"""

# Loads one toy module in a fresh interpreter and prints what happened as JSON.
LOADER = r"""
import json, os, sys, time
from hypersonic.jit import load_extension, loaded_history

cfg = json.loads(sys.argv[1])
go_file = cfg.get("go_file")
if go_file:  # start line: all processes begin loading at (about) the same moment
    deadline = time.monotonic() + 60
    while not os.path.exists(go_file):
        if time.monotonic() > deadline:
            sys.exit("timed out waiting for the go file")
        time.sleep(0.005)
module = load_extension(cfg["main"], default_cache_name=cfg["default_name"], cache_dir=cfg["cache_dir"],
                        generated={cfg["main"]: cfg["source"]})
record = loaded_history()[-1]
print(json.dumps({"answer": module.answer(), "name": module.__name__, "built": record.built,
                  "path": str(record.path)}))
"""


def toy_source(tag: str) -> str:
    """A toy module whose text (and so cache key) is unique to ``tag``."""
    return TOY_TEMPLATE % {"tag": tag}


def make_cc_wrapper(tmp_path: Path, delay_seconds: int = 0) -> Tuple[str, Path]:
    """A $CC that appends one line per invocation to a log, sleeps on compiles, then runs the real compiler."""
    log = tmp_path / "cc-invocations.log"
    wrapper = tmp_path / "cc-wrapper.sh"
    real = shlex.join(find_compiler().argv)
    wrapper.write_text(
        "#!/bin/sh\n"
        f'echo "$$ $*" >> {shlex.quote(str(log))}\n'
        f'case " $* " in *" -o "*) sleep {delay_seconds} ;; esac\n'
        f'exec {real} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper), log


def compile_count(log: Path) -> int:
    """How many compiles (not --version probes) the wrapper logged."""
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if " -o " in f"{line} ")


def subprocess_env(**overrides: Optional[str]) -> Dict[str, str]:
    env = dict(os.environ)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def loader_command(tmp_path: Path, cache_dir: Path, source: str, main: str = "toy.c",
                   go_file: Optional[Path] = None) -> List[str]:
    script = tmp_path / "load_toy.py"
    if not script.exists():
        script.write_text(LOADER)
    cfg = {"main": main, "source": source, "cache_dir": str(cache_dir), "default_name": TEST_CACHE_NAME,
           "go_file": str(go_file) if go_file else None}
    return [PYTHON, str(script), json.dumps(cfg)]


def run_loader(tmp_path: Path, cache_dir: Path, source: str, env: Dict[str, str]) -> Tuple[dict, str]:
    res = subprocess.run(loader_command(tmp_path, cache_dir, source), env=env, capture_output=True, text=True,
                         timeout=SUBPROCESS_TIMEOUT)
    assert res.returncode == 0, f"loader failed (status {res.returncode}):\n{res.stderr}"
    return json.loads(res.stdout.strip().splitlines()[-1]), res.stderr


def module_files(cache_dir: Path) -> List[Path]:
    return sorted(cache_dir.glob("_hs_*" + jit_cache.ext_suffix()))


# --- building once, under concurrency ----------------------------------------------------------

def test_concurrent_first_import_from_8_processes_builds_once_and_all_load(tmp_path: Path) -> None:
    cc, log = make_cc_wrapper(tmp_path, delay_seconds=1)  # the build outlasts every process's start
    cache_dir = tmp_path / "cache"
    go_file = tmp_path / "go"
    cmd = loader_command(tmp_path, cache_dir, toy_source("concurrent"), go_file=go_file)
    env = subprocess_env(CC=cc)
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    try:
        go_file.touch()
        outputs = [proc.communicate(timeout=SUBPROCESS_TIMEOUT) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    results = []
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["answer"] for r in results] == [42] * 8
    assert len({r["name"] for r in results}) == 1
    assert sum(r["built"] for r in results) == 1
    assert compile_count(log) == 1
    assert len(module_files(cache_dir)) == 1
    assert not list(cache_dir.glob(".build-*")), "the successful build's temp dir was not removed"


def test_threads_loading_at_once_in_one_process_build_once_and_share_the_module(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    cc, log = make_cc_wrapper(tmp_path, delay_seconds=1)
    monkeypatch.setenv("CC", cc)
    start = threading.Barrier(4, timeout=60)
    modules: List[object] = []
    errors: List[BaseException] = []

    def load() -> None:
        try:
            start.wait()
            modules.append(load_extension("toy.c", default_cache_name=TEST_CACHE_NAME, cache_dir=tmp_path / "cache",
                                          generated={"toy.c": toy_source("threads")}))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SUBPROCESS_TIMEOUT)
    assert not errors and len(modules) == 4
    assert all(module is modules[0] for module in modules)
    assert compile_count(log) == 1


def test_second_load_in_a_fresh_process_comes_from_the_cache(tmp_path: Path) -> None:
    cc, log = make_cc_wrapper(tmp_path)
    env = subprocess_env(CC=cc)
    first, _ = run_loader(tmp_path, tmp_path / "cache", toy_source("reuse"), env)
    second, _ = run_loader(tmp_path, tmp_path / "cache", toy_source("reuse"), env)
    assert (first["built"], second["built"]) == (True, False)
    assert first["name"] == second["name"]
    assert compile_count(log) == 1


# --- corrupt cache entries ---------------------------------------------------------------------

def test_truncated_cached_module_is_rebuilt_and_loads_in_the_same_process(tmp_path: Path) -> None:
    cc, log = make_cc_wrapper(tmp_path)
    env = subprocess_env(CC=cc)
    cache_dir = tmp_path / "cache"
    first, _ = run_loader(tmp_path, cache_dir, toy_source("truncated"), env)
    so_path = Path(first["path"])
    so_path.write_bytes(so_path.read_bytes()[:64])  # a crash mid-copy, a full disk...

    second, stderr = run_loader(tmp_path, cache_dir, toy_source("truncated"), env)
    assert second["answer"] == 42 and second["built"] is True
    assert "failed to load; rebuilding" in stderr
    assert so_path.stat().st_size > 64
    assert compile_count(log) == 2

    third, stderr = run_loader(tmp_path, cache_dir, toy_source("truncated"), env)
    assert third["built"] is False and "rebuilding" not in stderr
    assert compile_count(log) == 2


# --- compiler discovery ------------------------------------------------------------------------

NO_COMPILER_SCRIPT = r"""
import sys
from hypersonic.jit import CompilerNotFound, load_extension
try:
    load_extension("toy.c", default_cache_name="_x", cache_dir=sys.argv[1], generated={"toy.c": sys.argv[2]})
except CompilerNotFound as exc:
    print(exc)
    sys.exit(3)
print("loaded")
"""


def run_without_compiler(tmp_path: Path, source: str, cache_dir: Path, **env: Optional[str]):
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir(exist_ok=True)
    return subprocess.run([PYTHON, "-c", NO_COMPILER_SCRIPT, str(cache_dir), source],
                          env=subprocess_env(PATH=str(empty_bin), **env), capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT)


def test_missing_compiler_gives_one_clear_error_listing_what_was_tried(tmp_path: Path) -> None:
    res = run_without_compiler(tmp_path, toy_source("no-cc"), tmp_path / "cache", CC="/nonexistent/bin/cc")
    assert res.returncode == 3, res.stdout + res.stderr
    message = res.stdout
    assert "/nonexistent/bin/cc" in message and "Tried:" in message
    assert "CC is set" in message  # why nothing else was tried
    assert jit_compiler.fix_hint() in message
    assert "HYPERSONIC_JIT=0" in message
    assert "No prebuilt module" in message


def test_without_cc_every_candidate_on_path_is_tried(tmp_path: Path) -> None:
    import sysconfig

    sys_cc = (sysconfig.get_config_var("CC") or "").split()
    if sys_cc and os.sep in sys_cc[0] and os.access(sys_cc[0], os.X_OK):
        pytest.skip("sysconfig's CC is an absolute path that exists; PATH stripping cannot hide it")
    res = run_without_compiler(tmp_path, toy_source("no-cc-path"), tmp_path / "cache", CC="")
    assert res.returncode == 3, res.stdout + res.stderr
    for line in ("PATH: cc -> not found", "PATH: gcc -> not found", "PATH: clang -> not found"):
        assert line in res.stdout
    if sys_cc:
        assert "sysconfig CC" in res.stdout


def test_missing_python_headers_raise_compiler_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jit_compiler, "python_include_dir", lambda: tmp_path)
    with pytest.raises(CompilerNotFound, match="Python.h") as info:
        find_compiler()
    assert str(tmp_path / "Python.h") in str(info.value)


def test_host_without_compiler_uses_a_module_prebuilt_from_the_same_source(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    run_loader(tmp_path, cache_dir, toy_source("prebuilt"), subprocess_env())
    res = run_without_compiler(tmp_path, toy_source("prebuilt"), cache_dir, CC="/nonexistent/bin/cc")
    assert res.returncode == 0 and "loaded" in res.stdout, res.stdout + res.stderr
    # A different source has no prebuilt module: the clear error again.
    res = run_without_compiler(tmp_path, toy_source("prebuilt-other"), cache_dir, CC="/nonexistent/bin/cc")
    assert res.returncode == 3 and "No prebuilt module" in res.stdout


def test_read_only_cache_built_by_another_compiler_version_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache_dir = tmp_path / "cache"
    cc, _ = make_cc_wrapper(tmp_path)  # another compiler identity: another key
    run_loader(tmp_path, cache_dir, toy_source("other-compiler"), subprocess_env(CC=cc))

    def read_only(root: Path, file_name: str) -> None:
        raise jit_cache.CacheNotWritable(30, f"read-only file system: {root}")  # 30 = EROFS

    monkeypatch.setattr(jit_cache, "_open_lock", read_only)
    module = load_extension("toy.c", default_cache_name=TEST_CACHE_NAME, cache_dir=cache_dir,
                            generated={"toy.c": toy_source("other-compiler")})
    assert module.answer() == 42
    assert loaded_history()[-1].built is False
    with pytest.raises(OSError, match="read-only"):  # nothing prebuilt for this source
        load_extension("toy.c", default_cache_name=TEST_CACHE_NAME, cache_dir=cache_dir,
                       generated={"toy.c": toy_source("other-compiler-2")})


def test_importing_the_jit_runs_no_compiler(tmp_path: Path) -> None:
    cc, log = make_cc_wrapper(tmp_path)
    res = subprocess.run([PYTHON, "-c", "import hypersonic.jit, hypersonic.jit.__main__"],
                         env=subprocess_env(CC=cc), capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert res.returncode == 0, res.stderr
    assert not log.exists()


# --- keys --------------------------------------------------------------------------------------

def test_changed_jit_cflags_give_a_new_key_and_a_new_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = os.environ.get("HYPERSONIC_JIT_CFLAGS", "")  # keep sanitizer flags when run under sanitize.sh
    cache_dir = tmp_path / "cache"
    source = toy_source("cflags")
    monkeypatch.setenv("HYPERSONIC_JIT_CFLAGS", base)
    plain = load_extension("toy.c", default_cache_name=TEST_CACHE_NAME, cache_dir=cache_dir,
                           generated={"toy.c": source})
    monkeypatch.setenv("HYPERSONIC_JIT_CFLAGS", f"{base} -DTOY_ANSWER=7")
    flagged = load_extension("toy.c", default_cache_name=TEST_CACHE_NAME, cache_dir=cache_dir,
                             generated={"toy.c": source})
    assert plain.__name__ != flagged.__name__
    assert (plain.answer(), flagged.answer()) == (42, 7)  # the flag reached the compiler
    assert len(module_files(cache_dir)) == 2


def test_changed_source_or_defines_give_a_new_key(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    names = {
        load_extension("toy.c", default_cache_name=TEST_CACHE_NAME, cache_dir=cache_dir,
                       generated={"toy.c": toy_source("key-a")}).__name__,
        load_extension("toy.c", default_cache_name=TEST_CACHE_NAME, cache_dir=cache_dir,
                       generated={"toy.c": toy_source("key-b")}).__name__,
        load_extension("toy.c", default_cache_name=TEST_CACHE_NAME, cache_dir=cache_dir,
                       generated={"toy.c": toy_source("key-a")}, defines={"TOY_ANSWER": "5"}).__name__,
    }
    assert len(names) == 3
    assert len(module_files(cache_dir)) == 3


# --- compile errors and build dirs -------------------------------------------------------------

def test_c_syntax_error_raises_compile_error_with_command_output_and_kept_source(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    bad_source = "/* toy with a syntax error */\nint broken( {\n"
    with pytest.raises(CompileError) as info:
        load_extension("toy_bad.c", default_cache_name=TEST_CACHE_NAME, cache_dir=cache_dir,
                       generated={"toy_bad.c": bad_source})
    exc = info.value
    assert exc.command[0] == find_compiler().argv[0]
    assert "toy_bad.c" in exc.output and "error" in exc.output
    assert exc.source_path.is_file()
    kept = exc.source_path.parent
    assert (kept / "toy_bad.c").read_text() == bad_source
    assert CSRC_DIR in exc.include_path and kept in exc.include_path
    message = str(exc)
    assert str(exc.source_path) in message and exc.output in message and shlex.join(exc.command) in message
    # The kept dir reproduces the failure on its own.
    rerun = subprocess.run(["sh", str(kept / "build.sh")], capture_output=True, text=True,
                           timeout=SUBPROCESS_TIMEOUT)
    assert rerun.returncode != 0 and "toy_bad.c" in rerun.stderr
    assert not module_files(cache_dir)


def test_crashed_build_dirs_are_removed_and_recent_failed_ones_kept(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    crashed = cache_dir / ".build-_hs_000000000000000000000001-crash"
    failed = cache_dir / ".build-_hs_000000000000000000000002-failed"
    old_failed = cache_dir / ".build-_hs_000000000000000000000003-old"
    for build_dir in (crashed, failed, old_failed):
        build_dir.mkdir(parents=True)
        (build_dir / "top.c").write_text("/* left over */\n")
    (failed / "FAILED").write_text("compile error\n")
    (old_failed / "FAILED").write_text("compile error\n")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old_failed / "FAILED", (two_days_ago, two_days_ago))

    load_extension("toy.c", default_cache_name=TEST_CACHE_NAME, cache_dir=cache_dir,
                   generated={"toy.c": toy_source("cleanup")})
    assert not crashed.exists()
    assert failed.exists()
    assert not old_failed.exists()


# --- where the cache lives ---------------------------------------------------------------------

def test_cache_dir_resolution_order_argument_then_env_then_current_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYPERSONIC_CACHE_DIR", raising=False)
    assert resolve_cache_dir(None, "_toy_cache").resolve() == (tmp_path / "_toy_cache").resolve()
    monkeypatch.setenv("HYPERSONIC_CACHE_DIR", str(tmp_path / "from-env"))
    assert resolve_cache_dir(None, "_toy_cache") == tmp_path / "from-env"
    assert resolve_cache_dir(tmp_path / "from-arg", "_toy_cache") == tmp_path / "from-arg"
    assert resolve_cache_dir(str(tmp_path / "from-arg-str"), "_toy_cache") == tmp_path / "from-arg-str"


def test_unwritable_current_dir_cache_falls_back_to_the_user_cache_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYPERSONIC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # A file where the directory should be: not creatable, even for root (who may write anywhere).
    (tmp_path / "_toy_cache").write_text("not a directory")
    user_base = tmp_path / "home" / "Library" / "Caches" if sys.platform == "darwin" else tmp_path / "xdg"
    assert resolve_cache_dir(None, "_toy_cache") == user_base / "hypersonic" / "toy_cache"


def test_read_only_current_dir_cache_with_a_prebuilt_module_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = toy_source("read-only-local")
    local = tmp_path / TEST_CACHE_NAME
    run_loader(tmp_path, local, source, subprocess_env())  # "prebuild" into ./_hs_test_cache
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYPERSONIC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(jit_cache, "_writable_dir", lambda path: False)  # as on a read-only mount
    module = load_extension("toy.c", default_cache_name=TEST_CACHE_NAME, generated={"toy.c": source})
    assert module.answer() == 42
    record = loaded_history()[-1]
    assert record.built is False and record.path.parent == local
    assert not (tmp_path / "xdg").exists()


def test_unwritable_cache_dir_without_the_module_raises_a_clear_os_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match="prebuild"):
        load_extension("toy.c", default_cache_name=TEST_CACHE_NAME, cache_dir=blocker / "cache",
                       generated={"toy.c": toy_source("unwritable")})


@pytest.mark.parametrize(
    "kwargs, error, names",
    [
        ({"cache_dir": 123}, TypeError, "cache_dir"),
        ({"cache_dir": ["/tmp"]}, TypeError, "cache_dir"),
        ({"cache_dir": ""}, ValueError, "cache_dir"),
        ({"generated": ["toy.c"]}, TypeError, "generated"),
        ({"generated": {"../toy.c": "int x;"}}, ValueError, "generated"),
        ({"defines": {"1BAD": None}}, ValueError, "defines"),
        ({"defines": {1: None, "GOOD": None}}, ValueError, "defines"),
        ({"defines": {"GOOD": 1.5}}, TypeError, "defines"),
        ({"main": "../hs_common.h"}, ValueError, "main"),
        ({"main": "no_such_file.c", "generated": None}, ValueError, "main"),
        ({"default_cache_name": "a/b"}, ValueError, "default_cache_name"),
    ],
)
def test_bad_arguments_raise_errors_naming_the_argument(kwargs: dict, error: type, names: str) -> None:
    call = {"main": "toy.c", "default_cache_name": TEST_CACHE_NAME, "generated": {"toy.c": toy_source("args")},
            **kwargs}
    main = call.pop("main")
    with pytest.raises(error, match=names):
        load_extension(main, **call)


def test_resolve_cache_dir_rejects_a_non_path_with_type_error() -> None:
    with pytest.raises(TypeError, match="cache_dir"):
        resolve_cache_dir(3.5, TEST_CACHE_NAME)  # type: ignore[arg-type]


# --- prebuild ----------------------------------------------------------------------------------

def test_prebuild_reports_built_then_cached_for_each_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    source = toy_source("prebuild-target")

    def build_toy(cache_dir: Optional[Path]) -> None:
        load_extension("toy.c", default_cache_name=TEST_CACHE_NAME, cache_dir=cache_dir,
                       generated={"toy.c": source})

    monkeypatch.setitem(PREBUILD_TARGETS, "toy", build_toy)
    cache_dir = tmp_path / "cache"
    assert jit_main(["prebuild", "--cache-dir", str(cache_dir), "--target", "toy"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("built ") and str(cache_dir) in out and "toy: toy.c" in out
    assert len(module_files(cache_dir)) == 1


def test_prebuild_fails_when_a_target_loads_no_native_module(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(PREBUILD_TARGETS, "nothing", lambda cache_dir: None)
    assert jit_main(["prebuild", "--cache-dir", str(tmp_path / "cache"), "--target", "nothing"]) == 1
    assert "loaded no native module" in capsys.readouterr().err


def _socket_module_exists() -> bool:
    return (REPO / "src" / "hypersonic" / "socket.py").exists()


@pytest.mark.skipif(not _socket_module_exists(), reason="hypersonic/socket.py not written yet")
def test_prebuild_command_fills_a_cache_a_compiler_less_host_can_use(tmp_path: Path) -> None:
    cache_dir = tmp_path / "deploy-cache"
    env = subprocess_env(HYPERSONIC_CACHE_DIR=None, HYPERSONIC_JIT=None)
    cmd = [PYTHON, "-m", "hypersonic.jit", "prebuild", "--cache-dir", str(cache_dir)]
    first = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert first.returncode == 0, first.stderr
    assert "socket" in first.stdout and module_files(cache_dir)
    assert not (tmp_path / "_hypersonic_socket_cache").exists(), "import-time compile went to the default dir"
    built = first.stdout.splitlines()
    assert len(built) == len(module_files(cache_dir)) >= 2  # the native backend and poll
    second = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert second.returncode == 0, second.stderr
    assert [line.split()[0] for line in second.stdout.splitlines()] == ["cached"] * len(built)
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    deployed = subprocess.run(
        [PYTHON, "-c", "import hypersonic.socket as s; print(s.platform())"],
        env=subprocess_env(HYPERSONIC_CACHE_DIR=str(cache_dir), CC="/nonexistent/bin/cc", PATH=str(empty_bin),
                           HYPERSONIC_JIT=None),
        cwd=tmp_path, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.strip() == sys.platform.rstrip("0123456789")


def _server_module_exists() -> bool:
    return (REPO / "src" / "hypersonic" / "app.py").exists()


@pytest.mark.skipif(not _server_module_exists(), reason="hypersonic/app.py not written yet")
def test_prebuild_app_compiles_the_apps_server_module_into_the_cache(tmp_path: Path) -> None:
    (tmp_path / "toy_app.py").write_text(
        "from hypersonic import Hypersonic\n"
        "app = Hypersonic()\n"
        "app.get('/health', lambda: 'OK')\n"
    )
    cache_dir = tmp_path / "deploy-cache"
    res = subprocess.run([PYTHON, "-m", "hypersonic.jit", "prebuild", "--cache-dir", str(cache_dir),
                          "--target", "socket", "--app", "toy_app:app"],
                         env=subprocess_env(HYPERSONIC_CACHE_DIR=None, HYPERSONIC_JIT=None), cwd=tmp_path,
                         capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert res.returncode == 0, res.stderr
    app_lines = [line for line in res.stdout.splitlines() if "(app toy_app:app:" in line]
    assert len(app_lines) == 1 and app_lines[0].startswith("built ")
    assert Path(app_lines[0].split()[1]).parent == cache_dir
    assert not (tmp_path / "_hypersonic_cache").exists()


def test_prebuild_rejects_a_malformed_app_spec(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        jit_main(["prebuild", "--app", "no-colon"])
    assert info.value.code == 2
    assert "module:attribute" in capsys.readouterr().err


def test_info_command_names_the_compiler_and_cache_dirs(tmp_path: Path) -> None:
    res = subprocess.run([PYTHON, "-m", "hypersonic.jit", "info"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=SUBPROCESS_TIMEOUT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert find_compiler().argv[0] in res.stdout
    assert "_hypersonic_socket_cache" in res.stdout
    assert not list(tmp_path.iterdir()), "info created files"


# --- the sanitizer runner ----------------------------------------------------------------------

SANITIZED_TOY_TEST = r'''
import os
from hypersonic.jit import load_extension

SOURCE = r"""
#include <Python.h>
#include <stdlib.h>
#include <string.h>
#include "hs_pymodule.h"

static PyObject *fill(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_ssize_t count = PyLong_AsSsize_t(arg);
    if (count < 0 && PyErr_Occurred()) return NULL;
    char *block = malloc(8);
    if (block == NULL) return PyErr_NoMemory();
    memset(block, 'x', (size_t)count); /* count > 8: a heap overflow */
    long first = block[0];
    free(block);
    return PyLong_FromLong(first);
}

static PyMethodDef methods[] = {{"fill", fill, METH_O, "fill count bytes of an 8-byte block"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, HS_MODULE_NAME_STR, NULL, -1, methods, NULL, NULL, NULL, NULL};
PyMODINIT_FUNC HS_PYINIT(void) { return PyModule_Create(&def); }
"""


def test_fill():
    module = load_extension("toy_fill.c", default_cache_name="_toy", generated={"toy_fill.c": SOURCE})
    assert module.fill(int(os.environ["TOY_FILL"])) == ord("x")
'''


def run_sanitize_sh(tmp_path: Path, fill: int) -> subprocess.CompletedProcess:
    test_file = tmp_path / "test_sanitized_toy.py"
    test_file.write_text(SANITIZED_TOY_TEST)
    env = subprocess_env(**{name: None for name in SANITIZER_ENV})  # an outer sanitize.sh run must not leak in
    env.update(TOY_FILL=str(fill), PYTHON=PYTHON, HYPERSONIC_SANITIZE_CACHE_DIR=str(tmp_path / "sanitize-cache"))
    res = subprocess.run(["bash", str(REPO / "tests" / "sanitize.sh"), "-q", "-p", "no:cacheprovider", str(test_file)],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    if res.returncode == 2 and "no ASan runtime" in res.stderr:
        pytest.skip(res.stderr.strip())
    return res


def test_sanitize_runner_fails_on_a_heap_overflow_in_a_jit_module(tmp_path: Path) -> None:
    res = run_sanitize_sh(tmp_path, fill=16)
    assert res.returncode != 0
    assert "heap-buffer-overflow" in res.stderr
    assert "FAILED: sanitizer reports" in res.stderr


def test_sanitize_runner_passes_a_clean_jit_module(tmp_path: Path) -> None:
    res = run_sanitize_sh(tmp_path, fill=8)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout
