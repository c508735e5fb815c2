"""The client's own cost: how many structured requests a second one process sends, and its CPU per request.

    python benchmarks/bench_client.py [--prompts 2000] [--max-concurrency 200] [--latency-ms 20] [--pages 2000]

Against the simulator (its own process) at a fixed latency and no decode time, so the client is the limit:
- `sdk post`: the provider's request alone (the openai SDK's post with a prebuilt body, pydantic validation):
  the floor the rest is measured against;
- `gateway`: single-task prompts through the gateway (limits, retries, tracker, memo key, validation), one
  request a prompt, then with the batcher on (hybrid's settings);
- `whole run`: `main.py --parallelism-mode async --tasks summary --batch-size 1` on a generated site of
  --pages pages (fetch, parse, the page graph and the job queue as well).

Client CPU is this process's (or the run's main process's) CPU seconds over the requests the simulator
counted. Goals (issue 25): at most 3 ms of CPU a request on the gateway's path and at least 300 requests a
second. Writes benchmarks/results/bench_client.json.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx2
from _harness import finish, print_table, run_main, sim_stats, simulator
from _runs import generated_site

from document_it.analysis.gateway import build_gateway
from document_it.analysis.prompts import Task, render, schema_for
from document_it.analysis.wire import request_body
from document_it.config import LLMKind, Mode, Settings, StructuredMethod
from document_it.models import ParsedDoc
from document_it.parse import chunk_text
from document_it.testing.site import SiteServer

GOAL_RPS, GOAL_CPU_MS = 300, 3.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _page(n: int) -> ParsedDoc:
    text = f"Page {n} explains retries. " + "Failed requests back off exponentially, with jitter. " * 30
    return ParsedDoc(url=f"http://127.0.0.1/docs/p{n}.html", title=f"Retries {n}", topic="Guides", text=text,
                     chunks=tuple(chunk_text(text, 800)))


def _settings(base_url: str, cap: int, mode: Mode, batch_size: int, state: Path) -> Settings:
    return Settings(llm=LLMKind.OPENAI, llm_base_url=base_url, api_key="sk-bench", model="gpt-4o-mini",
                    max_concurrency=cap, mode=mode, batch_size=batch_size, no_cache=True, state_dir=state,
                    structured_output=StructuredMethod.JSON_SCHEMA)


async def _timed(calls: list[Callable[[], Awaitable[Any]]], cap: int) -> tuple[float, float]:
    """Wall and CPU seconds to run every call, at most `cap` at once."""
    gate = asyncio.Semaphore(cap)

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            await call()

    cpu, start = _cpu(), time.perf_counter()
    await asyncio.gather(*(one(call) for call in calls))
    return time.perf_counter() - start, _cpu() - cpu


async def _sdk_post(base_url: str, prompts: int, cap: int, state: Path) -> tuple[float, float]:
    settings = _settings(base_url, cap, Mode.ASYNC, 1, state)
    async with build_gateway(settings) as gateway:
        provider = gateway.provider
        client = provider._client()  # noqa: SLF001 - the provider's own SDK client, measured bare
        schema = schema_for(Task.SUMMARY)
        bodies = [request_body(settings.model, render(Task.SUMMARY, _page(n)), schema, StructuredMethod.JSON_SCHEMA)
                  for n in range(prompts)]

        async def post(body: dict[str, Any]) -> None:
            response = await client.post("/chat/completions", body=body, cast_to=httpx2.Response)
            schema.model_validate_json(response.json()["choices"][0]["message"]["content"])

        await post(bodies[0])  # connect and import before timing
        return await _timed([lambda body=body: post(body) for body in bodies], cap)


async def _gateway(base_url: str, prompts: int, cap: int, mode: Mode, batch_size: int,
                   state: Path) -> tuple[float, float]:
    async with build_gateway(_settings(base_url, cap, mode, batch_size, state)) as gateway:
        await gateway.ask(Task.SUMMARY, _page(-1))
        pages = [_page(n) for n in range(prompts)]
        return await _timed([lambda page=page: gateway.ask(Task.SUMMARY, page) for page in pages], prompts)


def _row(name: str, prompts: int, requests: int, wall: float, cpu: float) -> dict[str, Any]:
    rps = requests / wall
    cpu_ms = 1000 * cpu / max(requests, 1)
    row = {"row": name, "prompts": prompts, "requests": requests, "wall_s": round(wall, 2), "requests_per_s": round(rps),
           "prompts_per_s": round(prompts / wall), "cpu_ms_per_request": round(cpu_ms, 2)}
    print(f"  {name}: {rps:.0f} requests/s, {cpu_ms:.2f} ms CPU a request", flush=True)
    return row


def _whole_run(base_url: str, pages: int, cap: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        generated_site(Path(tmp) / "site", pages)
        with SiteServer(Path(tmp) / "site", max_seconds=900) as site:
            before = sim_stats(base_url)["requests"]
            run, _ = run_main("--source", site.url("llms.txt"), "--parallelism-mode", "async", "--llm", "openai",
                              "--llm-base-url", base_url, "--max-concurrency", str(cap), "--no-cache",
                              "--tasks", "summary", "--batch-size", "1", "--structured-output", "json_schema",
                              timeout=900)
            requests = sim_stats(base_url)["requests"] - before
    cpu = run["resources"]["main_cpu_seconds"]
    return _row("whole run (main.py async)", run["documents"]["total"], requests, run["wall_seconds"], cpu)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=2000)
    p.add_argument("--max-concurrency", type=int, default=200)
    p.add_argument("--latency-ms", type=float, default=20)
    p.add_argument("--pages", type=int, default=2000, help="pages of the whole-run row (0: leave it out)")
    args = p.parse_args()
    n, cap = args.prompts, args.max_concurrency
    rows = []
    with simulator("--latency-ms", str(args.latency_ms), "--ms-per-token", "0") as base_url, \
            tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        for name, make in (("sdk post (the floor)", lambda: _sdk_post(base_url, n, cap, state)),
                           ("gateway, one request a prompt", lambda: _gateway(base_url, n, cap, Mode.ASYNC, 1, state)),
                           ("gateway, batching (hybrid)", lambda: _gateway(base_url, n, cap, Mode.HYBRID, 0, state))):
            before = sim_stats(base_url)["requests"]
            wall, cpu = asyncio.run(make())
            requests = sim_stats(base_url)["requests"] - before - 1  # less the untimed first request
            rows.append(_row(name, n, requests, wall, cpu))
        if args.pages:
            rows.append(_whole_run(base_url, args.pages, cap))
    for row in rows:
        row["meets_goal"] = row["requests_per_s"] >= GOAL_RPS and row["cpu_ms_per_request"] <= GOAL_CPU_MS
    print(f"\nsimulator at {args.latency_ms:g} ms a request, no decode time; cap {cap}; one client process; "
          f"goal ≥ {GOAL_RPS} requests/s at ≤ {GOAL_CPU_MS:g} ms CPU a request\n")
    print_table(rows, [("row", "row", ""), ("prompts", "prompts", "d"), ("requests", "requests", "d"),
                       ("wall s", "wall_s", ".2f"), ("requests/s", "requests_per_s", "d"),
                       ("prompts/s", "prompts_per_s", "d"), ("CPU ms/request", "cpu_ms_per_request", ".2f"),
                       ("goal", "meets_goal", "")])
    finish("bench_client.json", args, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
