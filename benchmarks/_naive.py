"""The obvious implementation of the same work, for bench_modes' baseline row: one asyncio.gather over every
page's prompts under a semaphore, pages downloaded with requests in threads and parsed inline on the loop,
each prompt sent as it is (no batching, no cache, no adaptive window, no retries), answers validated.

    python benchmarks/_naive.py SOURCE_LLMS_TXT BASE_URL [--max-concurrency 20] [--tasks a,b]   (prints one JSON line)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable

from openai import AsyncOpenAI

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from document_it.analysis.prompts import PAGE_TASKS, Task, render, schema_for  # noqa: E402
from document_it.fetch import FetchLimits, fetch  # noqa: E402
from document_it.parse import parse  # noqa: E402
from document_it.sources import discover  # noqa: E402


async def run(source: str, base_url: str, cap: int, tasks: tuple[Task, ...] = PAGE_TASKS) -> dict:
    limits = FetchLimits(allow_private=True)
    refs = discover(source, limits).refs
    client = AsyncOpenAI(base_url=base_url, api_key="naive", max_retries=0, timeout=120)
    gate = asyncio.Semaphore(cap)
    failed = 0
    text_tokens = 0

    async def ask(task, page) -> None:
        nonlocal failed
        schema = schema_for(task)
        messages = [{"role": role, "content": text} for role, text in render(task, page)]
        async with gate:
            try:
                reply = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=messages,
                    response_format={"type": "json_schema", "json_schema": {
                        "name": schema.__name__, "schema": schema.model_json_schema()}})
                schema.model_validate_json(reply.choices[0].message.content or "")
            except Exception:  # the naive version just counts what went wrong
                failed += 1

    async def page_work(ref) -> None:
        nonlocal text_tokens
        got = await asyncio.to_thread(fetch, ref, limits)
        page = parse(got)  # inline, on the event loop
        text_tokens += page.text_tokens
        await asyncio.gather(*(ask(task, page) for task in tasks))

    started = time.perf_counter()
    await asyncio.gather(*(page_work(ref) for ref in refs))
    wall = time.perf_counter() - started
    await client.close()
    return {"pages": len(refs), "prompts": len(refs) * len(tasks), "failed_prompts": failed,
            "wall_seconds": round(wall, 3), "text_tokens": text_tokens}


def peer_main(work: Callable[[str, str, int, tuple[Task, ...]], Awaitable[dict]], doc: str | None) -> int:
    """The command line every peer script shares: SOURCE BASE_URL [--max-concurrency C] [--tasks a,b]; runs
    `work` and prints its figures as one JSON line."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("base_url")
    parser.add_argument("--max-concurrency", type=int, default=20)
    parser.add_argument("--tasks", default="", help="comma-separated page tasks (default: all five)")
    args = parser.parse_args()
    tasks = tuple(Task(name) for name in args.tasks.split(",")) if args.tasks else PAGE_TASKS
    print(json.dumps(asyncio.run(work(args.source, args.base_url, args.max_concurrency, tasks))))
    return 0


if __name__ == "__main__":
    raise SystemExit(peer_main(run, __doc__))
