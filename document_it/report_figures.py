"""The run's figures for the report, in plain words: run.json's summary as rows, notes and a timing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .models import DocResult, Task

__all__ = ["Figure", "Timing", "figures", "timing", "work_line", "counted", "STAGE_NAMES"]

STAGE_NAMES = {"fetch": "fetching", "parse": "parsing", "analyze": "page analysis"}  # run.json stage -> words
# what run.json's llm.by_task counts, in words; any other task is a question about one page
_ASKED = {Task.TOPIC_SYNTHESIS.value: "topic syntheses", Task.CHUNK_NOTES.value: "notes on parts of long pages",
          Task.TEXT.value: "free-form questions"}


@dataclass(frozen=True)
class Figure:
    """One row of the run's figures."""

    label: str
    value: str


@dataclass(frozen=True)
class Timing:
    """Where the time went: stage times summed over pages and LLM time summed over requests, against the wall."""

    wall: float
    stages: dict[str, float]
    slot_wait: float
    on_wire: float
    llm: bool  # requests went to an LLM: slot_wait and on_wire mean something


def counted(n: int, noun: str) -> str:
    """`n` and the noun, plural unless one: "1 page", "7 pages"."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def timing(summary: dict[str, Any]) -> Timing:
    """run.json's stage and LLM times, for the chart of where the time went."""
    stages, llm = summary.get("stages", {}), summary.get("llm", {})
    return Timing(wall=float(summary.get("wall_seconds", 0.0)),
                  stages={name: float(stages.get(name, 0.0)) for name in STAGE_NAMES},
                  slot_wait=float(stages.get("queue_wait", 0.0)), on_wire=float(stages.get("llm_wait", 0.0)),
                  llm=bool(llm.get("requests")))


def figures(summary: dict[str, Any], results: list[DocResult],
            synthesised: bool) -> tuple[tuple[Figure, ...], tuple[str, ...]]:
    """The run's figures in plain words, and a sentence for each sum that is larger than the wall time;
    `synthesised`: the run asked for topic syntheses."""
    docs, llm, stages = summary.get("documents", {}), summary.get("llm", {}), summary.get("stages", {})
    wall = float(summary.get("wall_seconds", 0.0))
    reached = f", {docs['not_reached']} not reached" if docs.get("not_reached") else ""
    rows = [Figure("pages", f"{docs.get('total', 0)} ({docs.get('completed', 0)} completed, {docs.get('failed', 0)} "
                            f"failed{reached})"),
            Figure("wall time", f"{wall:.2f} s")]
    if any(k in stages for k in STAGE_NAMES):
        rows.append(Figure("stage time, summed over pages", ", ".join(f"{k} {stages[k]:.2f} s" for k in STAGE_NAMES
                                                                     if k in stages)))
    notes = [_side_by_side(STAGE_NAMES[k], stages[k], sum(1 for r in results if k in r.timings), wall)
             for k in STAGE_NAMES if stages.get(k, 0) > wall > 0]
    requests = int(llm.get("requests") or 0)
    if requests:
        waited, wired = stages.get("queue_wait", 0.0), stages.get("llm_wait", 0.0)
        rows.append(Figure("LLM time, summed over requests", f"waiting for a slot {waited:.2f} s, on the wire "
                                                             f"{wired:.2f} s"))
        if waited + wired > wall > 0:
            notes.append(f"The {counted(requests, 'LLM request')} spent {waited:.1f} s waiting for a slot (behind "
                         f"the concurrency window, the rate limits or a batch) and {wired:.1f} s on the wire, summed "
                         f"over requests of which up to {llm.get('max_in_flight', 0)} were in flight at once: on "
                         f"average {waited / wall:.1f} were waiting and {wired / wall:.1f} on the wire at any moment "
                         f"of the {wall:.1f} s of wall time.")
    rows += _question_rows(summary, requests, results, synthesised)
    resources = summary.get("resources")
    if resources:
        rows.append(Figure("peak memory, all processes / CPU (peak, mean; 100 % = one core)",
                           f"{resources['peak_rss_mb']:.0f} MB over {resources['peak_processes']} processes / "
                           f"{resources['peak_cpu_percent']:.0f} %, {resources['mean_cpu_percent']:.0f} %"))
    if requests:
        rows += _llm_rows(llm)
    if (llm.get("batch_api") or {}).get("lines") or (llm.get("batch_api") or {}).get("requests"):
        rows += _batch_rows(llm["batch_api"])
    return tuple(rows), tuple(notes)


def _batch_rows(batch: dict[str, Any]) -> list[Figure]:
    """The provider's Batch API: its share of the work, and the cost at the batch price beside the live one."""
    cost, live = batch.get("cost_usd"), batch.get("cost_if_live_usd")
    run, run_live = batch.get("run_cost_usd"), batch.get("run_cost_if_live_usd")
    rows = [
        Figure("Batch API requests answered (sent by this run, rounds)",
               f"{batch['requests']:,} ({batch['lines']:,} lines in {batch['files']} files, {batch['rounds']} "
               "rounds)"),
        Figure("Batch API share of requests / tokens", f"{batch['share_of_requests']:.0%} / "
                                                       f"{batch['share_of_tokens']:.0%} ({batch['tokens_in']:,} in, "
                                                       f"{batch['tokens_out']:,} out)"),
        Figure("Batch API cost (at the batch price / live)",
               "unknown price for this model" if cost is None else
               f"${cost:.4f} / ${live:.4f} ({batch['discount']:.0%} off)"),
    ]
    if run is not None and run_live is not None:
        rows.append(Figure("whole run's LLM cost (as run / all live)", f"${run:.4f} / ${run_live:.4f}"))
    if batch.get("prompts_failed"):
        rows.append(Figure("prompts a batch did not answer", f"{batch['prompts_failed']:,} (asked again live, or in a "
                                                             "new batch with --batch-api strict)"))
    return rows


def work_line(work: dict[str, Any]) -> str:
    """run.json's `work` block in one sentence: requests and prompt tokens per page, against the page text."""
    pages, text, ratio = work["pages"], work.get("text_tokens_per_page"), work.get("prompt_per_text")
    if work.get("note") and not work["requests"]:
        read = f"; it read {counted(pages, 'page')}, {text:,} tokens of text each on average" if pages else ""
        return f"Work: {work['note']}{read}."
    if not pages:
        return (f"Work: no page was analysed this run; {counted(work['requests'], 'LLM request')}, "
                f"{counted(work['prompt_tokens'], 'prompt token')}.")
    return (f"Work: {round(work['requests_per_page'], 1):g} requests and {work['prompt_tokens_per_page']:,} prompt "
            f"tokens per page, for {text:,} tokens of page text" + (f" ({ratio:.2f}×)." if ratio is not None else "."))


def _offline(summary: dict[str, Any]) -> bool:
    """The offline analyser answered (run.json's provider "extractive"): no prompt went to an LLM."""
    return summary.get("provider") == "extractive" or str(summary.get("provider_label", "")).startswith("extractive ")


def _side_by_side(stage: str, seconds: float, pages: int, wall: float) -> str:
    """A stage's time summed over pages that were in it at the same time, against the wall time it took."""
    over = counted(pages, "page") if pages else "the pages"
    return (f"{stage.capitalize()} took {seconds:.1f} s summed over {over}, which ran side by side: "
            f"{wall:.1f} s of wall time, with about {seconds / wall:.1f} pages in this stage at once (a page's time "
            "includes any wait for a free worker).")


def _asked(summary: dict[str, Any], synthesised: bool) -> str:
    """What the questions were: the tasks run.json's llm.by_task counted, else what the run's outputs hold."""
    tasks = (summary.get("llm") or {}).get("by_task") or {}
    kinds = {_ASKED.get(task, "page analyses") for task, n in tasks.items() if n} if tasks else \
        {"page analyses", *(["topic syntheses"] if synthesised else [])}
    ordered = [kind for kind in ("page analyses", *_ASKED.values()) if kind in kinds]
    return " and ".join(filter(None, (", ".join(ordered[:-1]), ordered[-1]))) if ordered else "questions"


def _question_rows(summary: dict[str, Any], requests: int, results: list[DocResult],
                   synthesised: bool) -> list[Figure]:
    """Prompts, the cache and the pages whose analysis an earlier run made, each said as what it is."""
    llm = summary.get("llm", {})
    prompts = int(llm.get("prompts") or 0)
    if _offline(summary):
        rows = [Figure("questions answered offline", f"{prompts:,} ({_asked(summary, synthesised)}, by the "
                                                     "offline analyser: no LLM was asked)")]
    else:
        requests += int((llm.get("batch_api") or {}).get("requests") or 0)  # a Batch API line is a request too
        sent = "each sent as one request" if requests == prompts else \
            f"sent as {counted(requests, 'request')} (the cache answered some, or a batch carried several)"
        rows = [Figure("prompts (questions for the LLM)", f"{prompts:,}, {sent}" if prompts else "none")]
    cache = llm.get("cache") or {}
    if cache.get("enabled"):
        hits, misses = int(cache.get("hits", 0)), int(cache.get("misses", 0))
        what = "parsed pages found in the cache" if _offline(summary) else "parsed pages and answers found in the cache"
        rows.append(Figure(what, f"{hits:,} of {hits + misses:,} looked up"))
    reused = sum(r.reused for r in results)
    if reused:
        rows.append(Figure("pages analysed by an earlier run", f"{reused:,} of {len(results):,} (from the cache, or "
                                                               "kept because the page did not change)"))
    return rows


def _llm_rows(llm: dict[str, Any]) -> list[Figure]:
    latency, cost, window = llm["latency_s"], llm.get("cost_usd"), llm["window"]
    rows = [
        Figure("LLM requests (attempts, retries, 429s)",
               f"{llm['requests']} ({llm['attempts']} attempts, {llm['retries']} retries, "
               f"{llm['rate_limited']} rate-limited)"),
        Figure("requests completed / failed", f"{llm['by_status']['completed']} / {llm['by_status']['failed']}"),
        Figure("latency p50 / p95 / max", f"{latency['p50']:.2f} / {latency['p95']:.2f} / {latency['max']:.2f} s"),
        Figure("tokens in / out", f"{llm['tokens_in']:,} / {llm['tokens_out']:,}"),
        Figure("estimated cost", "unknown price for this model" if cost is None else f"${cost:.4f}"),
        Figure("most requests in flight / window now", f"{llm['max_in_flight']} / {window['current']} of "
                                                       f"{window['cap']} ({window['cuts']} cuts)"),
    ]
    batching = llm.get("batching") or {}
    if batching.get("batches"):
        rows.append(Figure("batches (items mean / max, prompt tokens saved)",
                           f"{batching['batches']} ({batching['items_per_batch_mean']} / "
                           f"{batching['items_per_batch_max']}, {batching['tokens_saved']:,})"))
    if llm.get("fallbacks"):
        rows.append(Figure("answered offline after LLM failures", str(llm["fallbacks"])))
    return rows
