"""The app served by scripts/leak_check.py: one route per kind of work the C does.

Static routes (baked responses), dynamic routes reading every part of the
request (params, query, headers, cookies, JSON, form), every handler result
type, a raising handler (500), a large response, the production features
(a static mount with a baked file answered from C and a large file sent with
sendfile, gzip compression, before/after hooks, a streaming route), and two
control routes:

* ``GET /__stats``: the loop's counters plus this process's open fd count;
* ``POST /__leakcheck``: runs LeakSanitizer now (``__lsan_do_recoverable_leak_check``,
  present when the ASan runtime is preloaded) and answers ``leaks=<0|1>``, or
  ``leaks=unavailable`` without LSan;
* ``POST /__leak_control``: with ``HYPERSONIC_LEAK_CONTROL=1``, leaks on purpose
  from a JIT module (scripts/leak_control.c), the check's positive control.

Run by leak_check.py as ``python leak_app.py PORT``; stops on SIGTERM.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import shutil
import sys
import tempfile
from typing import Any, Dict

from hypersonic import Hypersonic, Response

#: Size of the large response (forces partial writes and a write queue).
BIG_BODY_SIZE = 1024 * 1024

app = Hypersonic(max_request_size=4 * 1024 * 1024)

_BIG = b"b" * BIG_BODY_SIZE

#: Files of the static mount: small.txt is baked (answered from C), big.bin is sent from disk.
SMALL_FILE = b"small compressible line\n" * 100
BIG_FILE = bytes(range(256)) * 1200
_FILES = tempfile.mkdtemp(prefix="hs-leak-files-")
atexit.register(shutil.rmtree, _FILES, True)
with open(os.path.join(_FILES, "small.txt"), "wb") as _f:
    _f.write(SMALL_FILE)
with open(os.path.join(_FILES, "big.bin"), "wb") as _f:
    _f.write(BIG_FILE)
app.static("/files", _FILES)
app.compress(min_size=256)
REPORT = {"rows": [{"id": i, "name": f"row {i}"} for i in range(200)]}
STREAM_CHUNKS = 20


@app.get("/report")
def report(req: Any) -> Dict[str, Any]:
    return REPORT


def _tag(req: Any) -> None:
    req.state["tag"] = req.header("x-tag") or "none"


def _stamp(req: Any, resp: Any) -> None:
    resp.headers.append(("X-Tag", req.state["tag"]))


@app.get("/hooked", before=[_tag], after=[_stamp])
def hooked(req: Any) -> Dict[str, Any]:
    return {"tag": req.state["tag"]}


@app.get("/stream", streaming=True)
def stream(req: Any, out: Any) -> None:
    out.headers(200, content_type="text/plain")
    for i in range(STREAM_CHUNKS):
        out.write(f"chunk {i}\n")


@app.get("/health")
def health() -> str:
    return "OK"


@app.get("/static-json")
def static_json() -> Dict[str, Any]:
    return {"static": True, "items": [1, 2, 3]}


@app.get("/users/:id")
def user(req: Any) -> Dict[str, Any]:
    return {"id": req.param("id"), "q": req.query_param("q"), "agent": req.header("x-test"),
            "session": req.cookie("session"), "n_headers": len(req.headers)}


@app.post("/echo")
def echo(req: Any) -> bytes:
    return req.body


@app.post("/json")
def json_in(req: Any) -> Dict[str, Any]:
    return {"got": req.json()}


@app.post("/form")
def form_in(req: Any) -> Dict[str, Any]:
    return dict(req.form())


@app.get("/response")
def response_obj(req: Any) -> Response:
    return Response("created", status=201, headers={"X-Custom": "1"}, content_type="text/x-test")


@app.get("/tuple")
def tuple_result(req: Any) -> Any:
    return (202, {"X-T": "t"}, b"accepted")


@app.get("/boom")
def boom(req: Any) -> str:
    raise RuntimeError("intentional failure for the leak check")


@app.get("/big")
def big(req: Any) -> bytes:
    return _BIG


@app.get("/__stats")
def stats(req: Any) -> Dict[str, int]:
    result = dict(app.stats())
    result["open_fds"] = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1
    return result


@app.post("/__leakcheck")
def leakcheck(req: Any) -> str:
    try:
        check = ctypes.CDLL(None).__lsan_do_recoverable_leak_check
    except AttributeError:
        return "leaks=unavailable"
    check.restype = ctypes.c_int
    return f"leaks={check()}"


@app.post("/__leak_control")
def leak_control(req: Any) -> str:
    """Leak on purpose from a JIT module (only with HYPERSONIC_LEAK_CONTROL=1)."""
    if _leak_control is None:
        return "disabled"
    _leak_control.leak_malloc(4321)
    _leak_control.leak_reference()
    return "leaked"


def _load_leak_control() -> Any:
    if os.environ.get("HYPERSONIC_LEAK_CONTROL") != "1":
        return None
    from pathlib import Path

    from hypersonic.jit import load_extension

    source = (Path(__file__).resolve().parent / "leak_control.c").read_text()
    return load_extension("leak_control.c", default_cache_name="_hypersonic_cache",
                          generated={"leak_control.c": source})


_leak_control = _load_leak_control()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # The raising handler is logged at ERROR on every call: keep the log small.
    logging.getLogger("hypersonic").setLevel(logging.CRITICAL)
    app.compile()
    app.run(port=int(sys.argv[1]), host="127.0.0.1", workers=1)
