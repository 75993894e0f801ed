"""Hypersonic: an HTTP/1.1 server whose hot path is C compiled at run time.

>>> from hypersonic import Hypersonic, Response
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from .app import Hypersonic
    from .response import FileResponse, Response
    from .sse import SSE
    from .stream import Stream, StreamClosed

__all__ = ["Hypersonic", "Response", "FileResponse", "SSE", "Stream", "StreamClosed", "__version__"]

_LAZY = {"Hypersonic": "app", "Response": "response", "FileResponse": "response", "SSE": "sse", "Stream": "stream",
         "StreamClosed": "stream"}


def __getattr__(name: str) -> Any:
    # Lazy so that `import hypersonic.socket` does not import the server.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hypersonic' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
