"""An LLM server's reply is read up to a size cap: a server that sends 100 MB, or never stops sending,
costs at most the cap in memory (the attempt's time limit bounds the rest)."""

from __future__ import annotations

from typing import AsyncIterator

import httpx

__all__ = ["CappedTransport", "MAX_REPLY_BYTES"]

MAX_REPLY_BYTES = 16 * 1024 * 1024  # far above any chat completion; a batch of eight long answers is < 1 MB


class CappedTransport(httpx.AsyncBaseTransport):
    """Wraps a transport so every response body stops with a read error past `cap` bytes."""

    def __init__(self, inner: httpx.AsyncBaseTransport, cap: int = MAX_REPLY_BYTES) -> None:
        self._inner, self._cap = inner, cap

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        return httpx.Response(status_code=response.status_code, headers=response.headers,
                              stream=_Capped(response.stream, self._cap, request), extensions=response.extensions,
                              request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Capped(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, cap: int, request: httpx.Request) -> None:
        self._stream, self._cap, self._request = stream, cap, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._stream:  # type: ignore[union-attr]
            seen += len(chunk)
            if seen > self._cap:
                raise httpx.ReadError(f"the reply was larger than {self._cap // (1024 * 1024)} MB (not read further)",
                                      request=self._request)
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()  # type: ignore[union-attr]
