"""Crawl4AI as a peer: one schema'd LLM extraction per page, done the way a Crawl4AI user does it.

Run with the Python of a virtualenv where crawl4ai 0.9.5 is installed (this script imports only the standard
library and crawl4ai with what it brings, never document_it):

    VENV/bin/python benchmarks/_crawl4ai_peer.py --urls-file URLS.txt \\
        --base-url http://127.0.0.1:PORT/v1 --model gpt-4o-mini --max-concurrency 20 \\
        --schema-file SCHEMA.json --instruction "Extract ..." [--api-key sk-x] \\
        [--response-format json_schema|json_object|blocks]

--urls-file holds one page URL a line (blank lines and # comments are skipped); --schema-file a JSON Schema
(a pydantic model's model_json_schema()). The crawl: AsyncWebCrawler with AsyncHTTPCrawlerStrategy (plain
aiohttp GETs, no browser: Playwright's browsers are never needed), cache bypassed, and
LLMExtractionStrategy(extraction_type="schema", schema, instruction, input_format="markdown",
apply_chunking=False) - the page's whole markdown in ONE completion request - with
LLMConfig(provider="openai/MODEL", base_url, api_token) (LiteLLM underneath). arun_many runs the pages through
a MemoryAdaptiveDispatcher(max_session_permit=--max-concurrency), no RateLimiter (it would pace the requests
to the one documentation host, not the LLM).

--response-format: how the answer is asked to be JSON. json_schema (default): Crawl4AI's
force_json_response plus an OpenAI structured-output response_format carrying the schema, passed through
LLMExtractionStrategy's extra_args (what document-it asks for too); json_object: force_json_response alone
(JSON mode, the schema only in the prompt); blocks: Crawl4AI's default, no response_format, the prompt asks
for JSON inside <blocks> tags.

Prints exactly one JSON line on stdout:
    {"pages", "ok", "failed", "wall_seconds" (from just before the crawler starts to the end, imports
     excluded), "import_seconds" (crawl4ai and litellm), "errors" (up to 3 short strings), "llm_calls",
     "prompt_tokens", "completion_tokens" (as LiteLLM reported them)}
A page is ok when its crawl succeeded and its extracted content parses as JSON, is non-empty and holds no
error block (Crawl4AI turns a failed LLM call into a {"error": true, ...} block instead of failing the page).
Everything else (Crawl4AI's logs, LiteLLM's prints) goes to stderr: file descriptor 1 is pointed at stderr
for the whole run and the JSON line is written to the original stdout.

No network beyond what the URLs and --base-url name: LiteLLM's model cost map and Anthropic beta-header
config are read from its bundled copies, LiteLLM telemetry is off, Crawl4AI's cloud banner is off, and the
Hugging Face hub is told to stay offline.
"""

from __future__ import annotations

import os

# Before anything imports litellm or crawl4ai: no fetches at import time or on first use.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # else a GET to raw.githubusercontent.com
os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")  # same, for anthropic/ models
os.environ.setdefault("CRAWL4AI_NO_CLOUD_NOTICE", "1")  # the "Crawl4AI Cloud" banner on crawler start
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no strategy used here loads a model; never try to
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--urls-file", required=True, help="page URLs, one a line")
    p.add_argument("--base-url", required=True, help="OpenAI-compatible API base, e.g. http://127.0.0.1:PORT/v1")
    p.add_argument("--model", default="gpt-4o-mini", help="model name; sent as LiteLLM provider openai/MODEL")
    p.add_argument("--max-concurrency", type=int, default=20, help="pages crawled and extracted at once")
    p.add_argument("--schema-file", required=True, help="JSON Schema of one page's extraction")
    p.add_argument("--instruction", required=True, help="what to extract (Crawl4AI's instruction)")
    p.add_argument("--api-key", default=None, help="API key (default: $OPENAI_API_KEY, else 'sk-x')")
    p.add_argument("--response-format", choices=("json_schema", "json_object", "blocks"), default="json_schema",
                   help="how the answer is asked to be JSON (see above)")
    return p.parse_args(argv)


def _read_urls(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]


def _short(text: Any, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _page_error(result: Any) -> str | None:
    """None when the page is ok; otherwise why not."""
    if not getattr(result, "success", False):
        return f"crawl failed: {_short(getattr(result, 'error_message', '') or 'unknown error')}"
    raw = getattr(result, "extracted_content", None)
    if not raw:
        return "no extracted content"
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return f"extracted content is not JSON: {_short(exc)}"
    if not value:
        return "extracted content is empty"
    blocks = value if isinstance(value, list) else [value]
    for block in blocks:
        if isinstance(block, dict) and block.get("error") is True:
            return f"LLM extraction error: {_short(block.get('content', ''))}"
    return None


def _response_args(mode: str, schema: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """(force_json_response, extra_args) for LLMExtractionStrategy."""
    if mode == "blocks":
        return False, {}
    if mode == "json_object":
        return True, {}
    name = "".join(c if c.isalnum() or c in "_-" else "_" for c in str(schema.get("title") or "extraction"))[:64]
    return True, {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}}


async def _crawl(args: argparse.Namespace, urls: list[str], schema: dict[str, Any], c4: Any,
                 http_strategy: Any) -> dict[str, Any]:
    force_json, extra_args = _response_args(args.response_format, schema)
    api_key = args.api_key or os.environ.get("OPENAI_API_KEY") or "sk-x"
    strategy = c4.LLMExtractionStrategy(
        llm_config=c4.LLMConfig(provider=f"openai/{args.model}", base_url=args.base_url, api_token=api_key),
        schema=schema,
        extraction_type="schema",
        instruction=args.instruction,
        input_format="markdown",
        apply_chunking=False,  # 0.9.5: sets chunk_token_threshold to 1e9, so one section, one request a page
        force_json_response=force_json,
        extra_args=extra_args,
        verbose=False,
    )
    run_config = c4.CrawlerRunConfig(cache_mode=c4.CacheMode.BYPASS, extraction_strategy=strategy, verbose=False,
                                     stream=False)
    dispatcher = c4.MemoryAdaptiveDispatcher(max_session_permit=max(1, args.max_concurrency), rate_limiter=None)
    crawler_strategy = http_strategy(browser_config=c4.HTTPCrawlerConfig())

    started = time.perf_counter()
    async with c4.AsyncWebCrawler(crawler_strategy=crawler_strategy, config=c4.BrowserConfig(verbose=False)) as crawler:
        results = await crawler.arun_many(urls=urls, config=run_config, dispatcher=dispatcher)
    ok, errors = 0, []
    for result in results:
        error = _page_error(result)
        if error is None:
            ok += 1
        elif len(errors) < 3:
            errors.append(f"{getattr(result, 'url', '?')}: {error}")
    wall = time.perf_counter() - started
    usage = strategy.total_usage
    return {"pages": len(urls), "ok": ok, "failed": len(urls) - ok, "wall_seconds": round(wall, 3),
            "errors": errors, "llm_calls": len(strategy.usages), "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens}


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # Keep stdout for the one JSON line: whatever prints to fd 1 from here on (Crawl4AI's rich console,
    # LiteLLM's print()s, C extensions) lands on stderr instead.
    sys.stdout.flush()
    out_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        urls = _read_urls(args.urls_file)
        with open(args.schema_file, encoding="utf-8") as f:
            schema = json.load(f)

        t0 = time.perf_counter()
        import crawl4ai as c4  # noqa: PLC0415 - timed: import_seconds
        from crawl4ai.async_crawler_strategy import AsyncHTTPCrawlerStrategy  # noqa: PLC0415 - not re-exported
        import litellm  # noqa: PLC0415 - Crawl4AI imports it lazily on the first LLM call; count it here

        litellm.telemetry = False
        litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" prints on errors
        import_seconds = time.perf_counter() - t0

        report = asyncio.run(_crawl(args, urls, schema, c4, AsyncHTTPCrawlerStrategy))
        report["import_seconds"] = round(import_seconds, 3)
        keys = ("pages", "ok", "failed", "wall_seconds", "import_seconds", "errors", "llm_calls", "prompt_tokens",
                "completion_tokens")
        line = json.dumps({key: report[key] for key in keys}) + "\n"
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os.write(out_fd, line.encode())
    os.close(out_fd)
    return 0 if report["pages"] else 1


if __name__ == "__main__":
    sys.exit(main())
