"""App-specific C: the route table and the baked responses of one compiled app.

``compile()`` hands :func:`generate` the routes (static ones with their
response already rendered) and the security headers; it returns the text of
``hs_app.h``, which ``hs_servermod.c`` includes (``load_extension(generated=...)``).
The header holds constants only, with the shapes fixed by ``csrc/hs_router.h``:

* ``hs_app_baked``: every static route's whole HTTP response as a writable
  ``char[]`` with the offset of its Date value, which the C loop patches in
  place once a second (no re-baking); a route with a gzip variant
  (``app.compress()``) has it baked right after its identity response;
* ``hs_app_routes``/``hs_app_nodes``/``hs_app_children``: the segment trie of
  route patterns, per-method route indexes and each path's ``Allow`` line;
* ``hs_app_exact``: an open-addressing hash table (FNV-1a, mirrored from
  ``hs_route_hash``) of the parameter-free patterns;
* ``hs_app_status``: the status lines for 100..599 from :mod:`._status`;
* the field blocks (Content-Type + security headers) of dynamic and error responses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple

from ._status import reason_phrase, status_has_no_body

__all__ = ["METHODS", "RouteSpec", "bake_response", "generate", "fnv1a", "DATE_PLACEHOLDER"]

#: Route methods in the order of the C enum (hs_router.h HS_M_*).
METHODS: Tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

#: Date value baked into static responses until the loop's first patch.
DATE_PLACEHOLDER = b"Thu, 01 Jan 1970 00:00:00 GMT"

_STATUS_FIRST, _STATUS_LAST = 100, 599


def fnv1a(data: bytes) -> int:
    """32-bit FNV-1a, identical to ``hs_route_hash`` in hs_router.h."""
    h = 2166136261
    for byte in data:
        h ^= byte
        h = (h * 16777619) & 0xFFFFFFFF
    return h


@dataclass
class RouteSpec:
    """One registered route as the code generator needs it."""

    method: str
    pattern: str
    segments: Tuple[str, ...]  # "" for "/" ; ":name" for parameters
    static: bool
    baked: Optional[bytes] = None  # static: the whole response
    baked_head_len: int = 0
    baked_date_off: int = 0
    handler_index: int = -1  # dynamic: index in the handler tuple
    # static with app.compress(): the gzip response as (bytes, head_len, date_off), baked right
    # after the identity one (HS_ROUTE_STATIC_GZIP); None: one response for every client
    gzip_variant: Optional[Tuple[bytes, int, int]] = None
    wildcard: bool = False  # a prefix mount: matches segments + any rest (hs_node.wild_child)
    mount_fast: bool = False  # dynamic mount whose baked files C may answer first (HS_ROUTE_MOUNT)


def bake_response(status: int, header_block: bytes, body: bytes) -> Tuple[bytes, int, int]:
    """A whole HTTP/1.1 response with a placeholder Date.

    Returns (bytes, head_len, date_off): head_len is the length of the status
    line and field lines (excluding the empty line), date_off the offset of the
    29-byte Date value.
    """
    status_line = f"HTTP/1.1 {status} {reason_phrase(status)}\r\n".encode("ascii")
    date_off = len(status_line) + len(b"Date: ")
    head = status_line + b"Date: " + DATE_PLACEHOLDER + b"\r\n" + header_block
    if not status_has_no_body(status):
        head += b"Content-Length: %d\r\n" % len(body)
    else:
        body = b""
    return head + b"\r\n" + body, len(head), date_off


def _escape_table() -> Dict[int, str]:
    table: Dict[int, str] = {}
    for byte in range(256):
        if byte == 0x0A:
            table[byte] = "\\n"
        elif byte == 0x0D:
            table[byte] = "\\r"
        elif byte == 0x09:
            table[byte] = "\\t"
        elif byte in (0x22, 0x5C, 0x3F):  # " \ ? (no trigraphs)
            table[byte] = "\\" + chr(byte)
        elif not 0x20 <= byte < 0x7F:
            table[byte] = "\\%03o" % byte  # always three digits: a following digit cannot join it
    return table


_ESCAPES = _escape_table()
_BYTES_PER_LINE = 64


def c_string(data: bytes) -> str:
    """A C string literal (split over lines) holding exactly ``data``."""
    if not data:
        return '""'
    text = data.decode("latin-1")
    return "\n    ".join(
        '"' + text[i:i + _BYTES_PER_LINE].translate(_ESCAPES) + '"' for i in range(0, len(text), _BYTES_PER_LINE)
    )


@dataclass
class _Node:
    index: int = -1
    children: Dict[str, "_Node"] = field(default_factory=dict)
    param: Optional["_Node"] = None
    wild: Optional["_Node"] = None
    routes: Dict[int, int] = field(default_factory=dict)  # method index -> route index


def allow_value(methods: Sequence[int]) -> str:
    """The Allow field value for a path whose routes have these method indexes
    (HEAD comes with GET; OPTIONS is always answered)."""
    names = set(METHODS[m] for m in methods)
    if "GET" in names:
        names.add("HEAD")
    names.add("OPTIONS")
    return ", ".join(m for m in METHODS if m in names)


def _allow_line(methods: Sequence[int]) -> bytes:
    return ("Allow: " + allow_value(methods) + "\r\n").encode("ascii")


def generate(routes: Sequence[RouteSpec], security_block: bytes, text_type: str, json_type: str) -> str:
    """The text of hs_app.h for these routes (see the module docstring)."""
    out: List[str] = ["/* hs_app.h - generated by hypersonic._codegen for one app: do not edit. */", ""]

    # Baked responses (static routes).
    baked_rows: List[str] = []
    route_rows: List[str] = []
    for i, spec in enumerate(routes):
        if spec.static:
            assert spec.baked is not None
            b = len(baked_rows)
            out.append(f"/* {spec.method} {spec.pattern} */")
            out.append(f"static char hs_baked_{b}[] =\n    {c_string(spec.baked)};")
            baked_rows.append(
                f"    {{hs_baked_{b}, {len(spec.baked)}u, {spec.baked_head_len}u, {spec.baked_date_off}u}},"
            )
            kind = "HS_ROUTE_STATIC"
            if spec.gzip_variant is not None:  # identity at b, gzip at b + 1
                kind = "HS_ROUTE_STATIC_GZIP"
                gz, gz_head_len, gz_date_off = spec.gzip_variant
                out.append(f"/* {spec.method} {spec.pattern}, Content-Encoding: gzip */")
                out.append(f"static char hs_baked_{b + 1}[] =\n    {c_string(gz)};")
                baked_rows.append(f"    {{hs_baked_{b + 1}, {len(gz)}u, {gz_head_len}u, {gz_date_off}u}},")
            route_rows.append(f"    {{{kind}, {b}, -1}}, /* {i}: {spec.method} {spec.pattern} */")
        else:
            kind = "HS_ROUTE_MOUNT" if spec.mount_fast else "HS_ROUTE_DYNAMIC"
            route_rows.append(f"    {{{kind}, -1, {spec.handler_index}}}, /* {i}: {spec.method} {spec.pattern} */")
    out.append(f"#define HS_APP_NUM_BAKED {len(baked_rows)}")
    out.append(f"static hs_baked hs_app_baked[{max(1, len(baked_rows))}] = {{")
    out.extend(baked_rows or ["    {NULL, 0u, 0u, 0u},"])
    out.append("};")
    out.append(f"static const hs_route hs_app_routes[{max(1, len(route_rows))}] = {{")
    out.extend(route_rows or ["    {HS_ROUTE_STATIC, -1, -1},"])
    out.append("};")

    # Segment trie.
    root = _Node()
    has_params = False
    for i, spec in enumerate(routes):
        node = root
        for seg in spec.segments:
            if seg.startswith(":"):
                has_params = True
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                node = node.children.setdefault(seg, _Node())
        if spec.wildcard:
            has_params = True  # the trie walk (not only the exact table) is needed
            if node.wild is None:
                node.wild = _Node()
            node = node.wild
        node.routes[METHODS.index(spec.method)] = i
    order: List[_Node] = []
    queue = [root]
    while queue:  # breadth first; root is node 0
        node = queue.pop(0)
        node.index = len(order)
        order.append(node)
        queue.extend(node.children[k] for k in sorted(node.children, key=lambda s: (len(s.encode()), s.encode())))
        if node.param is not None:
            queue.append(node.param)
        if node.wild is not None:
            queue.append(node.wild)
    child_rows: List[str] = []
    node_rows: List[str] = []
    all_methods: Set[int] = set()
    for n, node in enumerate(order):
        first = len(child_rows)
        keys = sorted(node.children, key=lambda s: (len(s.encode()), s.encode()))
        for key in keys:
            seg_bytes = key.encode()
            child_rows.append(f"    {{{c_string(seg_bytes)}, {len(seg_bytes)}u, {node.children[key].index}}},")
        per_method = ", ".join(str(node.routes.get(m, -1)) for m in range(len(METHODS)))
        allow = _allow_line(list(node.routes)) if node.routes else b""
        all_methods.update(node.routes)
        allow_c = c_string(allow) if node.routes else "NULL"
        node_rows.append(
            f"    {{{first}, {len(keys)}, {node.param.index if node.param else -1}, {1 if node.routes else 0}, "
            f"{{{per_method}}}, {allow_c}, {len(allow)}u, {node.wild.index if node.wild else -1}}}, /* node {n} */"
        )
    out.append(f"#define HS_APP_HAS_PARAMS {1 if has_params else 0}")
    out.append(f"static const hs_child hs_app_children[{max(1, len(child_rows))}] = {{")
    out.extend(child_rows or ['    {"", 0u, -1},'])
    out.append("};")
    out.append(f"static const hs_node hs_app_nodes[{len(node_rows)}] = {{")
    out.extend(node_rows)
    out.append("};")

    # Exact-path hash table of parameter-free patterns.
    exact: Dict[bytes, int] = {}
    for spec in routes:
        if not spec.wildcard and not any(s.startswith(":") for s in spec.segments):
            node = root
            for seg in spec.segments:
                node = node.children[seg]
            exact[spec.pattern.encode()] = node.index
    size = 8
    while size < 2 * len(exact) + 1:
        size *= 2
    slots: List[Optional[Tuple[bytes, int]]] = [None] * size
    for path, node_index in exact.items():
        slot = fnv1a(path) & (size - 1)
        while slots[slot] is not None:
            slot = (slot + 1) & (size - 1)
        slots[slot] = (path, node_index)
    out.append(f"#define HS_APP_EXACT_MASK {size - 1}u")
    out.append(f"static const hs_exact hs_app_exact[{size}] = {{")
    for entry in slots:
        if entry is None:
            out.append("    {NULL, 0u, -1},")
        else:
            out.append(f"    {{{c_string(entry[0])}, {len(entry[0])}u, {entry[1]}}},")
    out.append("};")
    out.append(f"static const char hs_app_allow_all[] = {c_string(_allow_line(sorted(all_methods)))};")

    # Status lines and field blocks.
    out.append(f"static const hs_status_line hs_app_status[{_STATUS_LAST - _STATUS_FIRST + 1}] = {{")
    for code in range(_STATUS_FIRST, _STATUS_LAST + 1):
        line = f"HTTP/1.1 {code} {reason_phrase(code)}\r\n".encode("ascii")
        out.append(f"    {{{c_string(line)}, {len(line)}u}},")
    out.append("};")
    text_block = f"Content-Type: {text_type}\r\n".encode("latin-1") + security_block
    json_block = f"Content-Type: {json_type}\r\n".encode("latin-1") + security_block
    out.append(f"static const char hs_app_security_block[] = {c_string(security_block)};")
    out.append(f"static const char hs_app_error_block[] = {c_string(text_block)};")
    out.append(f"static const char hs_app_text_block[] = {c_string(text_block)};")
    out.append(f"static const char hs_app_json_block[] = {c_string(json_block)};")
    out.append("")
    return "\n".join(out)
