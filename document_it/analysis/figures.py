"""What a gateway reports: the `llm` block of run.json, and in process mode the figures each worker's
gateway exports and the parent's absorbs, so run.json counts every request of the run once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .batching import combined_stats
from .providers import ChatProvider

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["summary", "export", "absorb"]


def summary(gateway: Gateway) -> dict[str, Any]:
    """The `llm` block of run.json."""
    window = gateway.limiter.window
    chat = gateway.provider if isinstance(gateway.provider, ChatProvider) else None
    return {
        "prompts": gateway.all_prompts,
        "task_strategy": gateway.settings.task_strategy.value,  # as the run resolved --task-strategy auto
        **gateway.tracker.get_summary(),
        "max_in_flight": gateway.max_in_flight,
        "attempt_timeout_s": gateway.attempt_limit.seconds,
        "window": {"cap": window.cap, "cuts": window.cuts, "queueing_cuts": window.queue_cuts,
                   **_window_state(gateway)},
        "learned_rpm": gateway.limiter.learned_rpm,
        "breaker_opened": gateway.breaker.opened,
        "fallbacks": gateway.fallbacks,
        "cache": gateway.memo.stats(),
        "batching": _batching(gateway),
        "structured_output": chat.choice.summary() if chat else None,
        "context": _context([chat.window.summary(), *gateway.absorbed_context]) if chat else None,
    }


def export(gateway: Gateway) -> dict[str, Any]:
    """`gateway`'s raw figures, picklable, for the parent process to absorb()."""
    window = gateway.limiter.window
    chat = gateway.provider if isinstance(gateway.provider, ChatProvider) else None
    return {"records": [vars(r).copy() for r in gateway.tracker.records.values()], "prompts": gateway.all_prompts,
            "fallbacks": gateway.fallbacks, "max_in_flight": gateway.max_in_flight,
            "cuts": window.cuts, "queue_cuts": window.queue_cuts, "breaker_opened": gateway.breaker.opened,
            "learned_rpm": gateway.limiter.learned_rpm, "tokens_saved": gateway.tokens_saved,
            "batching": gateway.batcher.stats() if gateway.batcher else None,
            "attempt_timeout_s": gateway.attempt_limit.seconds,
            "window": {"current": window.limit, "settled": window.watch.settled, "start_probe": _verdict(window)},
            "context": chat.window.summary() if chat else None}


def absorb(gateway: Gateway, exported: dict[str, Any]) -> None:
    """Fold a worker process's figures into `gateway`'s (process mode)."""
    for data in exported["records"]:
        record = gateway.tracker.new(data["task"])
        for name, value in data.items():
            if name != "id":
                setattr(record, name, value)
    gateway.prompts += exported["prompts"]
    gateway.fallbacks += exported["fallbacks"]
    gateway.max_in_flight += exported["max_in_flight"]  # workers ran side by side: an upper bound
    gateway.limiter.window.cuts += exported["cuts"]
    gateway.limiter.window.queue_cuts += exported.get("queue_cuts", 0)
    gateway.breaker.opened += exported["breaker_opened"]
    gateway.limiter.learned_rpm = gateway.limiter.learned_rpm or exported["learned_rpm"]
    gateway.tokens_saved += exported.get("tokens_saved", 0)
    gateway.attempt_limit.seconds = max(gateway.attempt_limit.seconds, exported.get("attempt_timeout_s", 0.0))
    if exported.get("batching"):
        gateway.absorbed_batching.append(exported["batching"])
    if exported.get("context"):
        gateway.absorbed_context.append(exported["context"])
    if exported.get("window"):
        gateway.absorbed_windows.append(exported["window"])


def _batching(gateway: Gateway) -> dict[str, Any]:
    """The gateway's batching figures plus those of the worker processes it absorbed."""
    mine = gateway.batcher.stats() if gateway.batcher else {"batches": 0}
    return {**combined_stats([mine, *gateway.absorbed_batching], gateway.batcher is not None),
            "tokens_saved": gateway.tokens_saved}


def _window_state(gateway: Gateway) -> dict[str, Any]:
    """The window now and where it settled: the gateway's own, or in process mode (where the parent's sent
    nothing) the workers' summed, settled only when every worker's is."""
    windows = gateway.absorbed_windows
    if not windows:
        window = gateway.limiter.window
        return {"current": window.limit, "settled": window.watch.settled, "start_probe": _verdict(window)}
    settled = [w["settled"] for w in windows]
    verdicts = sorted({w.get("start_probe") for w in windows} - {None})
    return {"current": sum(w["current"] for w in windows),
            "settled": sum(settled) if all(s is not None for s in settled) else None,
            "start_probe": ", ".join(verdicts) or None}


def _verdict(window: Any) -> str | None:
    """What the start probe found: parallel, queueing, cut (a 429 or timeout ended it), none (no pair told)."""
    return window.start.verdict if window.start is not None else None


def _context(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Several processes' context windows as one: the smallest window and prompt room, the largest scale and
    counted ratio, refusals and learnings summed."""
    return {"tokens": min(w["tokens"] for w in windows), "scale": max(w["scale"] for w in windows),
            "prompt_room": min(w["prompt_room"] for w in windows),
            "refusals": sum(w["refusals"] for w in windows), "learned": sum(w["learned"] for w in windows),
            "counted": max((w["counted"] for w in windows if w.get("counted")), default=None)}
