"""connect_llm(): a client for free-form prompts over the gateway (limits, retries, cache, accounting),
usable from plain code (`query`) and from async code on any event loop (`await query_async`)."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Coroutine, Mapping, TypeVar

from ..config import LLMKind, Settings
from ..errors import ConfigError
from .gateway import Gateway, build_gateway
from .patterns import PromptReply

__all__ = ["connect_llm", "GatewayClient"]

T = TypeVar("T")


def connect_llm(base_url: str | None = None, model: str | None = None, api_key: str | None = None,
                retries: int = 3, max_concurrency: int = 20, *, simulate: bool = False, rpm: float = 0,
                tpm: float = 0, request_timeout: float = 60.0, state_dir: str | Path | None = None,
                cache: bool = True, env: Mapping[str, str] = os.environ) -> GatewayClient:
    """A gateway-backed client. Unset arguments follow the CLI's rules: OPENAI_BASE_URL / OPENAI_MODEL /
    OPENAI_API_KEY and DOCUMENT_IT_LLM_BASE_URL / DOCUMENT_IT_MODEL / DOCUMENT_IT_STATE_DIR. `simulate=True`
    starts the project's LLM simulator for this client (no key, no network)."""
    base_url = base_url or env.get("DOCUMENT_IT_LLM_BASE_URL") or env.get("OPENAI_BASE_URL") or None
    api_key = api_key or env.get("OPENAI_API_KEY") or None
    if not (simulate or base_url or api_key):
        raise ConfigError("connect_llm needs an LLM: pass base_url= or api_key=, set OPENAI_API_KEY or "
                          "OPENAI_BASE_URL, or pass simulate=True")
    settings = Settings(
        llm=LLMKind.SIMULATE if simulate and not base_url else LLMKind.OPENAI, llm_base_url=base_url,
        api_key=api_key, model=model or env.get("DOCUMENT_IT_MODEL") or env.get("OPENAI_MODEL") or "gpt-4o-mini",
        retries=retries, max_concurrency=max_concurrency, rpm=rpm, tpm=tpm, request_timeout=request_timeout,
        state_dir=Path(state_dir or env.get("DOCUMENT_IT_STATE_DIR") or ".document_it"), no_cache=not cache,
        quiet=True)
    return GatewayClient(settings)


class GatewayClient:
    """The OpenAI-compatible LLMClient: free-form prompts through one gateway that lives on the client's own event loop (a daemon thread),
    so calls from any thread or loop share its limits; close() (or `with`) releases it."""

    def __init__(self, settings: Settings) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="document-it-llm", daemon=True)
        self._thread.start()
        self._sim: Any = None
        if settings.llm is LLMKind.SIMULATE and not settings.llm_base_url:
            from ..testing.llm_sim import SimServer

            self._sim = SimServer(latency_ms=settings.sim_latency_ms, model=settings.model,
                                  max_seconds=24 * 3600).start()
            settings = settings.with_(llm_base_url=self._sim.base_url)
        self.settings = settings
        self._gateways: dict[str, Gateway] = {}
        self._closed = False

    # -- asking ----------------------------------------------------------------------------------
    def query(self, prompt: str, system: str | None = None) -> str:
        """The model's answer to `prompt` (blocks; for plain code)."""
        return self._call(self._reply(prompt, system, None)).text

    async def query_async(self, prompt: str, system: str | None = None) -> str:
        """The model's answer to `prompt`, from async code on any event loop."""
        return (await self._await(self._reply(prompt, system, None))).text

    async def process_prompt(self, prompt: str, *, model_name: str | None = None,
                             timeout: float | None = None) -> PromptReply:
        """The answer with its token counts, from `model_name` (default: the client's), within `timeout` s."""
        reply = self._reply(prompt, None, model_name)
        return await self._await(asyncio.wait_for(reply, timeout) if timeout else reply)

    def summary(self) -> dict[str, Any]:
        """Requests, tokens, retries, cache hits and cost so far, per model."""
        return {model: gateway.summary() for model, gateway in self._gateways.items()}

    async def _reply(self, prompt: str, system: str | None, model: str | None) -> PromptReply:
        gateway = await self._gateway(model or self.settings.model)
        done = await gateway.complete(prompt, system)
        return PromptReply(done.text, done.tokens_in, done.tokens_out)

    async def _gateway(self, model: str) -> Gateway:
        if model not in self._gateways:
            from ..core.cache import open_memo

            settings = self.settings.with_(model=model)
            self._gateways[model] = build_gateway(settings, memo=open_memo(settings))
        return self._gateways[model]

    # -- the client's loop -----------------------------------------------------------------------
    def _submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        if self._closed:
            coro.close()
            raise RuntimeError("this LLM client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("query() called on the client's own loop: use query_async()")
        return self._submit(coro).result()

    async def _await(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(self._submit(coro))

    def close(self) -> None:
        """Close the connections, stop the client's loop (and its simulator, if it started one)."""
        if self._closed:
            return
        self._call(self._aclose())
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if self._sim is not None:
            self._sim.stop()

    async def _aclose(self) -> None:
        for gateway in self._gateways.values():
            await gateway.provider.aclose()
            gateway.memo.close()

    def __enter__(self) -> "GatewayClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "GatewayClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)
