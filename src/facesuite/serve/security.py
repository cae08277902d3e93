"""Checks on every request before the app sees it: body size, Host, Origin and the API key.

Safety, for a server that may be exposed: request bodies are size-limited (:class:`BodyLimit`);
:class:`RequestGuard` checks the API key on mutating routes, refuses cross-origin writes and, on
loopback, unknown Host headers (DNS rebinding). No CORS headers are sent.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_KEY_HEADER = "X-API-Key"
API_KEY_ENV = "FACESUITE_API_KEY"
# Routes that change server state (the gallery; evaluation reports on disk): they need the API key
# when the server has one. Every other POST only computes an answer from the uploaded images.
MUTATING_ROUTES = frozenset({("POST", "/gallery/enroll"), ("DELETE", "/gallery"), ("POST", "/jobs/recognition")})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class BodyLimit:
    """Answers 413 to any request body over ``limit`` bytes, declared or streamed.

    A declared Content-Length over the limit is refused before anything is read; a body that
    grows past the limit while streaming is cut off and whatever the app answers is replaced by
    the 413, so the multipart parser never spools more than ``limit`` bytes to disk.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        received = 0
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        replaced = False

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if exceeded and not replaced:
                replaced = True
                await self._refuse(scope, receive, send)
            if not replaced:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        mb = self.limit / (1024 * 1024)
        await JSONResponse({"error": f"upload too large (limit {mb:g} MB per request)"}, status_code=413)(scope, receive, send)


class RequestGuard:
    """Checks run on the headers alone, before any request body is read.

    - ``allowed_hosts``: the Host header must name one of them. A server on loopback is otherwise
      reachable from any web page through DNS rebinding (evil.example resolving to 127.0.0.1).
    - A state-changing method with an ``Origin`` header naming another site is refused: a page on
      another origin can POST a multipart form without any CORS preflight.
    - With ``api_key``, :data:`MUTATING_ROUTES` need it in ``X-API-Key`` (or ``Authorization: Bearer``).
    """

    def __init__(self, app: ASGIApp, api_key: str | None, allowed_hosts: Sequence[str] | None) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = self._problem(scope)
            if problem is not None:
                status, message = problem
                await JSONResponse({"error": message}, status_code=status)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _problem(self, scope: Scope) -> tuple[int, str] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.allowed_hosts is not None and _hostname(host) not in self.allowed_hosts:
            return 400, f"unexpected Host header {host!r}"
        method = scope["method"]
        if method not in ("GET", "HEAD", "OPTIONS") and "origin" in headers:
            origin = headers["origin"]
            if origin.partition("://")[2].lower() != host.lower():
                return 403, f"cross-origin request from {origin!r} refused"
        if self.api_key is not None and (method, scope["path"]) in MUTATING_ROUTES:
            given = headers.get(API_KEY_HEADER.lower()) or headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.api_key):
                return 401, f"{method} {scope['path']} needs the server's API key (header {API_KEY_HEADER})"
        return None


def _hostname(host: str) -> str:
    """``host`` of a Host header ``host[:port]`` or ``[v6]:port``, lower-cased."""
    if host.startswith("["):
        return host[1 : host.find("]")].lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()
