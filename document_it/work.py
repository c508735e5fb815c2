"""The work a run asked for: LLM requests and prompt tokens per page, against the pages' own text (run.json `work`)."""

from __future__ import annotations

from typing import Any, Iterable

from .models import DocResult, DocStatus

__all__ = ["work_block"]


def work_block(results: Iterable[DocResult], llm: dict[str, Any], is_llm: bool) -> dict[str, Any]:
    """run.json's `work` block for the results this run made and its gateway's `llm` figures.

    - pages: pages analysed this run, i.e. completed and not `reused` (neither answered from the cache nor
      an unchanged page's last analysis kept). Failed pages are left out: their requests count, but they
      gave no analysis to divide by. With the offline extractive analyser these are the pages it read.
    - requests: HTTP requests the LLM server received, i.e. the gateway's attempts, retries included, the
      topic syntheses' and (process mode, Dask) every worker's too, and the Batch API lines whose answers this
      run read; a cached answer sends none.
    - prompt_tokens: the prompt tokens of those requests, as the server reported them (`llm.tokens_in`, and
      `llm.batch_api.tokens_in` for the batches' lines).
    - text_tokens: the pages' own text in estimated tokens (DocResult.text_tokens), summed over `pages`.
    Per-page figures are null when no page was analysed; prompt_per_text is null when there is no text."""
    analysed = [r for r in results if r.status is DocStatus.COMPLETED and not r.reused]
    pages = len(analysed)
    batch = llm.get("batch_api") or {}  # each line of a batch answered is a request the server ran
    requests = int(llm.get("attempts", 0)) + int(batch.get("requests", 0)) if is_llm else 0
    prompt_tokens = int(llm.get("tokens_in", 0)) + int(batch.get("tokens_in", 0)) if is_llm else 0
    text_tokens = sum(r.text_tokens for r in analysed)
    block: dict[str, Any] = {
        "pages": pages,
        "requests": requests,
        "requests_per_page": _per(requests, pages, 2),
        "prompt_tokens": prompt_tokens,
        "prompt_tokens_per_page": _per(prompt_tokens, pages, 0),
        "text_tokens": text_tokens,
        "text_tokens_per_page": _per(text_tokens, pages, 0),
        "prompt_per_text": _per(prompt_tokens, text_tokens, 2),
    }
    if not is_llm:
        block["note"] = "no LLM: the offline extractive analyser sent no requests"
    elif not pages:
        block["note"] = "no page was analysed this run (each came from the cache, or failed)"
    return block


def _per(amount: int, count: int, digits: int) -> float | int | None:
    if not count:
        return None
    value = round(amount / count, digits)
    return int(value) if digits == 0 else value
