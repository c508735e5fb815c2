"""The LLM client's transport: a server's reply is read up to a size cap (a server that sends 100 MB, or never
stops sending, costs at most the cap in memory; the attempt's time limit bounds the rest), and each request
that reaches it is noted, so an error raised before a request left the machine is known to be our own."""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass
from typing import AsyncIterator

import httpx2

__all__ = ["CappedTransport", "MAX_REPLY_BYTES", "Outbound", "watch_outbound", "gist"]

MAX_REPLY_BYTES = 16 * 1024 * 1024  # far above any chat completion; a batch of eight long answers is < 1 MB
_HEAD_BYTES = 1024  # of each reply's body, kept to describe a reply that could not be read


@dataclass
class Outbound:
    """Whether the request made under watch_outbound() reached the transport (so it left, or tried to), and
    what came back: the status, the content type and the first bytes of the body, to say what a reply that
    could not be read was."""

    left: bool = False
    status: int | None = None
    content_type: str = ""
    head: bytes = b""

    def described(self) -> str:
        """'HTTP 200, text/html: 502 Bad Gateway nginx': what the reply was, on one short line."""
        if self.status is None:
            return "no reply"
        text = gist(self.head.decode("utf-8", "replace"))
        kind = self.content_type.split(";")[0].strip() or "no content type"
        return f"HTTP {self.status}, {kind}" + (f": {text}" if text else ", empty")


def gist(body: str, limit: int = 120) -> str:
    """A reply body on one short line; an HTML page's tags, scripts and styles dropped."""
    if body.lstrip().startswith("<"):
        body = re.sub(r"(?is)<(script|style)\b.*?(</\1>|$)|<[^>]*>?", " ", body)
    text = " ".join(body.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


_WATCHED: ContextVar[Outbound | None] = ContextVar("document_it_outbound", default=None)


def watch_outbound() -> Outbound:
    """A fresh flag that the next request sent from this context (and tasks it starts) sets on its way out."""
    flag = Outbound()
    _WATCHED.set(flag)
    return flag


class CappedTransport(httpx2.AsyncBaseTransport):
    """Wraps a transport so every response body stops with a read error past `cap` bytes."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, cap: int = MAX_REPLY_BYTES) -> None:
        self._inner, self._cap = inner, cap

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        flag = _WATCHED.get()
        if flag is not None:
            flag.left = True
        response = await self._inner.handle_async_request(request)
        if flag is not None:
            flag.status, flag.content_type = response.status_code, response.headers.get("content-type", "")
        return httpx2.Response(status_code=response.status_code, headers=response.headers,
                              stream=_Capped(response.stream, self._cap, request, flag), extensions=response.extensions,
                              request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Capped(httpx2.AsyncByteStream):
    def __init__(self, stream: httpx2.AsyncByteStream, cap: int, request: httpx2.Request,
                 flag: Outbound | None) -> None:
        self._stream, self._cap, self._request, self._flag = stream, cap, request, flag

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._stream:  # type: ignore[union-attr]
            if self._flag is not None and seen < _HEAD_BYTES:
                self._flag.head += chunk[:_HEAD_BYTES - seen]
            seen += len(chunk)
            if seen > self._cap:
                raise httpx2.ReadError(f"the reply was larger than {self._cap // (1024 * 1024)} MB (not read further)",
                                      request=self._request)
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()  # type: ignore[union-attr]
