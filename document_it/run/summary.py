"""run.json's content, and what a topic synthesis reads from the pages' results."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import __version__
from ..config import LLMKind, Settings
from ..models import NO_TOPIC, DocResult, DocStatus
from ..work import work_block

if TYPE_CHECKING:
    from ..analysis.prompts import TopicInput
    from ..core.resources import ResourceSampler

__all__ = ["summarize_run", "topic_inputs", "plain_synthesis"]


def topic_inputs(results: list[DocResult]) -> list[TopicInput]:
    from ..analysis.prompts import TopicInput

    topics: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {}
    for result in sorted(results, key=lambda r: r.url):
        if result.status is DocStatus.COMPLETED and result.analysis:
            concepts = tuple(c["name"] for c in result.analysis["key_concepts"][:5])
            topics.setdefault(result.topic or NO_TOPIC, []).append(
                (result.title, result.analysis["summary"], concepts))
    return [TopicInput(topic, tuple(pages)) for topic, pages in topics.items()]


def plain_synthesis(synthesis: dict[str, Any]) -> dict[str, Any]:
    return {topic: value if isinstance(value, str) else value.model_dump() for topic, value in synthesis.items()}


def summarize_run(settings: Settings, results: list[DocResult], llm: dict[str, Any], wall: float,
                  status: str = "completed", total: int | None = None,
                  resources: ResourceSampler | None = None, cluster: Any = None,
                  this_run: list[DocResult] | None = None) -> dict[str, Any]:
    """run.json's content. `this_run`: the results this invocation made (default: all of `results`; a resumed
    run's `results` also holds the pages finished before)."""
    from ..analysis.extractive import LABEL as EXTRACTIVE_LABEL

    completed = sum(r.status is DocStatus.COMPLETED for r in results)
    stages = {name: round(sum(r.timings.get(name, 0.0) for r in results), 3)
              for name in ("fetch", "parse", "analyze")}
    # inside analyze, summed over LLM requests: waiting for a slot (batcher queue, window, limits), on the wire
    stages["queue_wait"] = round(llm.get("slot_wait_s", 0.0) + (llm.get("batching") or {}).get("queue_wait_s", 0.0), 3)
    stages["llm_wait"] = round(llm.get("on_wire_s", 0.0), 3)
    return {
        "version": __version__,
        "status": status,
        "mode": settings.mode.value,
        "source": settings.source,
        "provider": settings.provider_name,
        "provider_label": EXTRACTIVE_LABEL if settings.llm is LLMKind.EXTRACTIVE else settings.provider_name,
        "model": settings.model_name,
        "wall_seconds": round(wall, 3),
        "documents": {"total": len(results), "completed": completed, "failed": len(results) - completed,
                      "not_reached": (total or len(results)) - len(results)},
        "failed_urls": sorted(r.url for r in results if r.status is DocStatus.FAILED),
        "failures": {r.url: r.error or "unknown error" for r in sorted(results, key=lambda r: r.url)
                     if r.status is DocStatus.FAILED},
        "llm": llm,
        "work": work_block(results if this_run is None else this_run, llm, settings.llm is not LLMKind.EXTRACTIVE),
        "stages": stages,
        "resources": resources.summary() if resources is not None else None,
        "cluster": cluster.summary(stages) if cluster is not None else None,
        "settings": {
            "max_workers": settings.max_workers,
            "analysis_workers": settings.analysis_workers,
            "max_concurrency": settings.max_concurrency,
            "batch_size": settings.batch_size,
            "structured_output": settings.structured_output.value,
            "rpm": settings.rpm, "tpm": settings.tpm, "retries": settings.retries,
            "max_wait": settings.max_wait, "fallback": settings.fallback.value,
            "max_cost": settings.max_cost, "max_tokens": settings.max_tokens,
            "sub_model": settings.sub_model, "chunk_tokens": settings.chunk_tokens,
            "extract_fields": list(settings.extract_fields),
            "tasks": [task.value for task in settings.tasks],
            "task_strategy": settings.task_strategy.value,
        },
    }
