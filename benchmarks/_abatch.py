"""LangChain's own answer to the same work, for bench_peers.py: every page downloaded (threads) and parsed, then
one `abatch(inputs, config={"max_concurrency": C})` over every (page, task) prompt, each through
`ChatOpenAI.with_structured_output(schema)`; no batching, no cache, answers validated by LangChain.

    python benchmarks/_abatch.py SOURCE_LLMS_TXT BASE_URL [--max-concurrency 20] [--tasks a,b]   (prints one JSON line)
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from document_it.analysis.prompts import Task, render, schema_for  # noqa: E402
from document_it.fetch import FetchLimits, fetch  # noqa: E402
from document_it.parse import parse  # noqa: E402
from document_it.sources import discover  # noqa: E402

from _naive import peer_main  # noqa: E402


async def run(source: str, base_url: str, cap: int, tasks: tuple[Task, ...]) -> dict:
    started = time.perf_counter()
    limits = FetchLimits(allow_private=True)
    refs = discover(source, limits).refs
    with ThreadPoolExecutor(8) as pool:
        pages = [parse(got) for got in pool.map(lambda ref: fetch(ref, limits), refs)]
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=base_url, api_key="abatch", max_retries=0, timeout=120,
                     use_responses_api=False)
    chains = {task: llm.with_structured_output(schema_for(task), method="json_schema") for task in tasks}

    async def ask(item: tuple[Task, list[tuple[str, str]]]) -> object:
        task, messages = item
        return await chains[task].ainvoke(messages)

    inputs = [(task, render(task, page)) for page in pages for task in tasks]
    answers = await RunnableLambda(ask).abatch(inputs, config={"max_concurrency": cap}, return_exceptions=True)
    failed = sum(isinstance(answer, BaseException) for answer in answers)
    return {"pages": len(pages), "prompts": len(inputs), "failed_prompts": failed,
            "wall_seconds": round(time.perf_counter() - started, 3),
            "text_tokens": sum(page.text_tokens for page in pages)}


if __name__ == "__main__":
    raise SystemExit(peer_main(run, __doc__))
