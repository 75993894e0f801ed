"""Baked files of static mounts, answered by the C loop without a Python call.

Theory of operation. A :class:`~hypersonic._static.StaticMount` bakes its small
files at ``compile()``; every request to the mount still calls it. For a mount
no before/after hook applies to, :func:`native_entries` turns each baked file
into one entry of a C table (``csrc/hs_filefast.h``), keyed by the exact request
path under which the mount's first dictionary lookup finds it (``prefix + key``;
the index alias ``dir/`` included): the 200 and 304 responses of the identity
and gzip representations, fully serialised exactly as the dynamic path would
write the mount's :class:`~hypersonic.response.PreparedResponse` (same
``finalize``, same :func:`~hypersonic._codegen.bake_response` layout, Date
patched in C), the ETags, and the file's path, size, mtime (ns) and inode for
the C side's once-a-second staleness check. The mount's route gets the kind
``HS_ROUTE_MOUNT``: C answers what it can (no Range, If-Range, If-Match,
If-Unmodified-Since, nor If-Modified-Since alone) and calls the mount for the rest.

Left out (always answered by the mount): keys that are not plain ASCII or
contain ``%`` (the mount percent-decodes those first), files whose responses
``app.compress()`` would alter, and files that changed between the bake and
this function. The pure-Python server ignores the table: it calls the mount,
which gives the same bytes.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Tuple

from ._codegen import bake_response
from ._static import StaticMount, _Entry, _Rep
from .response import PreparedResponse, finalize

__all__ = ["native_entries"]

# One serialised response for the C table: (bytes, head_len, date_off).
_Baked = Tuple[bytes, int, int]


def _serialise(status: int, block: bytes, body: bytes, security_headers: Sequence[Tuple[str, str]],
               compression: Any) -> Optional[_Baked]:
    """The response the dynamic path writes for PreparedResponse(status, block, body), or None when
    app.compress() would change it (for some client)."""
    finalized = finalize(PreparedResponse(status, block, body), security_headers)
    if compression is not None:
        for accepts in (False, True):
            if tuple(compression.adjust(finalized, accepts)) != tuple(finalized):
                return None
    status, block, body = finalized
    return bake_response(status, block, body)


def _rep_tuple(mount: StaticMount, rep: _Rep, security_headers: Sequence[Tuple[str, str]],
               compression: Any) -> Optional[Tuple[Any, ...]]:
    if rep.data is None:
        return None
    ok = _serialise(200, rep.block200, rep.data, security_headers, compression)
    not_modified = _serialise(304, rep.block304, b"", security_headers, compression)
    if ok is None or not_modified is None:
        return None
    etag = rep.etag.encode("latin-1") if mount.etag else b""
    return ok + not_modified + (etag,)


def _entry_tuple(mount: StaticMount, handler: int, key: str, entry: _Entry,
                 security_headers: Sequence[Tuple[str, str]], compression: Any) -> Optional[Tuple[Any, ...]]:
    path = mount.prefix + key
    if "%" in path or not path.isascii():
        return None
    try:
        info = os.stat(entry.path)
    except OSError:
        return None
    if info.st_size != entry.size or info.st_mtime_ns != entry.mtime_ns:
        return None  # changed since the bake: the mount drops it on its next check
    reps: List[Tuple[Any, ...]] = []
    for rep in (entry.identity, entry.gzip):
        if rep is None:
            continue
        serialised = _rep_tuple(mount, rep, security_headers, compression)
        if serialised is None:
            return None
        reps.append(serialised)
    return (path.encode("ascii"), handler, os.fsencode(entry.path), info.st_size, info.st_mtime_ns, info.st_ino,
            tuple(reps))


def native_entries(mounts: Sequence[Tuple[StaticMount, int]], security_headers: Sequence[Tuple[str, str]],
                   compression: Any = None) -> Tuple[Tuple[Any, ...], ...]:
    """The ``static_files`` argument of the native module's configure(): one entry per baked file
    and request path of each (prepared) mount, given with its handler index.

    compression: the app's :class:`~hypersonic._compress.Compression`, or None.
    """
    entries: List[Tuple[Any, ...]] = []
    seen = set()
    for mount, handler in mounts:
        if not isinstance(mount, StaticMount):
            raise TypeError(f"mounts must hold StaticMount objects, not {type(mount).__name__}")
        if not isinstance(handler, int) or handler < 0:
            raise ValueError(f"handler index must be a non-negative int, not {handler!r}")
    # The deepest mount first: a path two mounts bake is routed to the deepest (hs_router.h).
    for mount, handler in sorted(mounts, key=lambda m: -len(m[0].prefix)):
        for key, entry in sorted(mount._baked.items()):
            item = _entry_tuple(mount, handler, key, entry, security_headers, compression)
            if item is None or item[0] in seen:
                continue  # a path of two mounts: the deeper one's entry came first
            seen.add(item[0])
            entries.append(item)
    return tuple(entries)
