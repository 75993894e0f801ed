"""The benchmark routes as a raw ASGI app (run: uvicorn --loop uvloop --http httptools)."""

from __future__ import annotations

import json
from typing import Awaitable, Callable

PLAIN = [(b"content-type", b"text/plain")]
JSON = [(b"content-type", b"application/json")]
USER_PREFIX = "/user/"


async def _reply(send: Callable[[dict], Awaitable[None]], status: int, headers: list, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]) -> None:
    """Answer one ASGI HTTP request (lifespan events are acknowledged)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/plaintext":
        await _reply(send, 200, PLAIN, b"Hello, World!")
    elif path == "/json":
        await _reply(send, 200, JSON, json.dumps({"message": "Hello, World!"}, separators=(",", ":")).encode())
    elif path.startswith(USER_PREFIX) and "/" not in path[len(USER_PREFIX):]:
        await _reply(send, 200, PLAIN, path[len(USER_PREFIX):].encode())
    elif path == "/upload" and scope["method"] == "POST":
        size = 0
        more = True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await _reply(send, 200, PLAIN, str(size).encode())
    else:
        await _reply(send, 404, PLAIN, b"Not Found")
