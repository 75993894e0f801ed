"""The benchmark routes as a granian RSGI app (run: granian --interface rsgi ...)."""

from __future__ import annotations

import json
from typing import Any

PLAIN_HEADERS = [("content-type", "text/plain")]
JSON_HEADERS = [("content-type", "application/json")]
HELLO = b"Hello, World!"
USER_PREFIX = "/user/"


async def app(scope: Any, proto: Any) -> None:
    """Answer one RSGI HTTP request."""
    path = scope.path
    if path == "/plaintext":
        proto.response_bytes(200, PLAIN_HEADERS, HELLO)
    elif path == "/json":
        proto.response_bytes(200, JSON_HEADERS, json.dumps({"message": "Hello, World!"}, separators=(",", ":")).encode())
    elif path.startswith(USER_PREFIX) and "/" not in path[len(USER_PREFIX):]:
        proto.response_str(200, PLAIN_HEADERS, path[len(USER_PREFIX):])
    elif path == "/upload" and scope.method == "POST":
        body = await proto()
        proto.response_str(200, PLAIN_HEADERS, str(len(body)))
    else:
        proto.response_bytes(404, PLAIN_HEADERS, b"Not Found")
