"""The C router against an independent Python statement of the routing rules,
over many generated paths (hypothesis), on a real server.

Rules (issue 3, point 2): a pattern matches a path when both have the same
number of '/'-separated segments, every static segment is equal, and every
``:name`` segment is non-empty. Among matching patterns the one whose first
differing segment is static wins ("static segments preferred"). No match: 404.
The C side implements this as a hash of parameter-free paths plus a segment
trie walked static-first with backtracking; the reference below just filters
and sorts, so the two share no code."""

from __future__ import annotations

import itertools
import json
from typing import Dict, Iterator, List, Optional, Tuple
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _http_wire import connect, get
from _server_util import ServerProcess, start_app

SEGMENTS = ("a", "b", ":p")


def _patterns() -> List[str]:
    out = ["/", "/a/", "/:p/", "/a/b/", "/a//b"]
    for n in (1, 2, 3):
        for combo in itertools.product(SEGMENTS, repeat=n):
            # parameter names must be unique within a pattern
            segs = [f":p{i}" if s == ":p" else s for i, s in enumerate(combo)]
            out.append("/" + "/".join(segs))
    out = [p.replace(":p/", ":q/") if p == "/:p/" else p for p in out]
    return out


PATTERNS = _patterns()


def reference_match(path: str) -> Optional[Tuple[str, Dict[str, str]]]:
    segs = path.split("/")[1:]
    matches = []
    for pattern in PATTERNS:
        psegs = pattern.split("/")[1:]
        if len(psegs) != len(segs):
            continue
        if all((p.startswith(":") and s) or p == s for p, s in zip(psegs, segs)):
            matches.append(pattern)
    if not matches:
        return None
    # static before parameter at the first differing segment: sort key per segment (0 static, 1 param)
    best = min(matches, key=lambda p: [1 if s.startswith(":") else 0 for s in p.split("/")[1:]])
    params = {p[1:]: unquote(s) for p, s in zip(best.split("/")[1:], segs) if p.startswith(":")}
    return best, params


APP = "from hypersonic import Hypersonic\n\napp = Hypersonic()\n\n" + "\n".join(
    f"app.get({p!r}, lambda req, _p={p!r}: {{'route': _p, 'params': req.params}})" for p in PATTERNS
) + "\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_app(APP, tmp_path_factory.mktemp("routing_app"))
    try:
        yield srv
    finally:
        srv.stop()


path_segment = st.sampled_from(["a", "b", "c", "", "ab", "a%20b", "%61", "b.c"])
paths = st.lists(path_segment, min_size=0, max_size=4).map(lambda segs: "/" + "/".join(segs))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=paths)
def test_router_agrees_with_reference_rules(server: ServerProcess, path: str) -> None:
    sock, reader = connect(server.port)
    with sock:
        sock.sendall(get(path))
        resp = reader.response()
    expected = reference_match(path)
    if expected is None:
        assert resp.status == 404, (path, resp.body)
    else:
        assert resp.status == 200, (path, resp.body)
        assert json.loads(resp.body) == {"route": expected[0], "params": expected[1]}, path


def test_reference_rules_pin_the_documented_examples() -> None:
    assert reference_match("/a/b") == ("/a/b", {})
    assert reference_match("/a/c") == ("/a/:p1", {"p1": "c"})
    assert reference_match("/c/b") == ("/:p0/b", {"p0": "c"})
    assert reference_match("/a/") == ("/a/", {})
    assert reference_match("/c/") == ("/:q/", {"q": "c"})
    assert reference_match("/a/b/c/d") is None
