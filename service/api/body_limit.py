"""Refuses request bodies over ``max_body_bytes`` with 413, before any route reads them.

A declared ``Content-Length`` over the limit is refused before the app sees it; a body sent
without one (chunked) is counted as it arrives and cut off at the limit. Either way the rest of
the body is read and dropped (up to ``DRAIN_BYTES``) before the answer: a client still sending
when the connection closed would see a reset instead of the 413. A client that asked
``Expect: 100-continue`` has sent nothing yet, so nothing is read.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DRAIN_BYTES = 64 * 2**20
"""Most of an oversized body read and dropped so its sender gets the answer; past this the
connection is closed on it."""


class _TooLarge(Exception):
    pass


class _CountedBody:
    """A request's receive and send, counting the body as it arrives (``_TooLarge`` past the
    limit) and noting whether the response has started."""

    def __init__(self, receive: Receive, send: Send, max_bytes: int) -> None:
        self._receive, self._send, self.max_bytes = receive, send, max_bytes
        self.seen = 0
        self.more = True
        self.started = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            self.more = message.get("more_body", False)
            if self.seen > self.max_bytes:
                raise _TooLarge
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if await self._refused_by_length(scope, receive, send):
            return
        body = _CountedBody(receive, send, self.max_bytes)
        try:
            await self.app(scope, body.receive, body.send)
        except _TooLarge:
            if not body.started:
                if body.more:  # another receive() after the last part would wait for a disconnect
                    await _drain(receive, DRAIN_BYTES)
                await self._refuse(send, 413, self._message(body.seen))

    async def _refused_by_length(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer a request whose declared Content-Length is no number or over the limit."""
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is None:
            return False
        if not declared.strip().isdigit():
            await self._refuse(send, 400, "The Content-Length header is not a number.")
            return True
        if int(declared) <= self.max_bytes:
            return False
        if not _expects_continue(scope):
            await _drain(receive, int(declared))
        await self._refuse(send, 413, self._message(int(declared)))
        return True

    def _message(self, size: int) -> str:
        return (
            f"The request body is {size:,} bytes or more; this service takes at most "
            f"{self.max_bytes:,} (GENTUNE_MAX_BODY_BYTES)."
        )

    @staticmethod
    async def _refuse(send: Send, status: int, detail: str) -> None:
        body = json.dumps(
            {"detail": detail, "errors": [{"field": "body", "message": detail, "line": None}]}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _expects_continue(scope: Scope) -> bool:
    return dict(scope["headers"]).get(b"expect", b"").lower() == b"100-continue"


async def _drain(receive: Receive, size: int) -> None:
    """Read and drop what is left of a body, up to ``DRAIN_BYTES`` of it."""
    if size > DRAIN_BYTES:
        return
    read = 0
    while read <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
