"""--extract-fields: named fields read from every chunk of a page with the ParallelProcessor, through the
gateway (so limits, retries, cache and accounting apply), merged into one value per field."""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from ..models import ParsedDoc
from .gateway import Gateway
from .patterns import ParallelProcessor, ProcessingRequest, PromptReply

__all__ = ["EXTRACT_PROMPT", "extract_fields", "GatewayLLM"]

EXTRACT_PROMPT = ("Return JSON with {fields}: one object with exactly those keys, each the value this part of "
                  "a documentation page states (a short string), or null when it does not say.\n\n{chunk}")


class GatewayLLM:
    """The LLMClient protocol over a gateway that is already open on this event loop."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def process_prompt(self, prompt: str, *, model_name: str, timeout: float) -> PromptReply:
        done = await asyncio.wait_for(self._gateway.sibling(model_name).complete(prompt), timeout)
        return PromptReply(done.text, done.tokens_in, done.tokens_out)


async def extract_fields(page: ParsedDoc, gateway: Gateway, fields: Sequence[str], model: str) -> dict[str, Any]:
    """Each field's first non-empty value over the page's chunks, in page order (None when no chunk states it)."""
    chunks = [chunk.text for chunk in page.chunks] or [page.text]
    request = ProcessingRequest(chunks, EXTRACT_PROMPT, fields, model_name=model,
                                max_concurrency=max(1, len(chunks)), timeout=gateway.request_timeout * 2)
    merged: dict[str, Any] = dict.fromkeys(fields)
    for item in await ParallelProcessor(GatewayLLM(gateway)).process(request):
        for name, value in item.result.items():
            if merged.get(name) in (None, "") and value not in (None, ""):
                merged[name] = value
    return merged
