"""Named shapes of real servers for the simulator (`--profile`), each set from public figures.

Every figure is a round number in the range the sources report. The sources move as models and hardware
change; these are the orders of magnitude that decide whether batching and concurrency pay, not a
prediction of any one deployment's speed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PROFILES", "profile_settings", "describe"]

PROFILES: dict[str, dict[str, Any]] = {
    # A hosted API such as OpenAI's gpt-4o-mini. Independent measurements (Artificial Analysis' public
    # leaderboard) put its time to first token near 0.5 s and its output near 80-110 tokens a second, so
    # about 10 ms a token. Providers prefill thousands of prompt tokens a second per request: 0.2 ms each
    # (5,000 a second). Slots are far above any client's cap (0 = unlimited here); the provider's rate limits
    # are modelled separately (--rpm/--tpm).
    "hosted": {"latency_ms": 500.0, "ms_per_token": 10.0, "prefill_ms_per_token": 0.2, "capacity": 0,
               "shared_decode": 0.0},
    # A server people run themselves: llama.cpp's server (`--parallel 4`), or Ollama with
    # OLLAMA_NUM_PARALLEL=4, serving a 7-8B model quantised to 4 bits on a laptop-class GPU or Apple silicon.
    # llama.cpp's own llama-bench tables for such setups show prompt processing near 1,000 tokens a second
    # (1 ms a token) and generation near 40 tokens a second (25 ms a token). The 4 slots share one GPU: under
    # continuous batching each sequence decodes slower the more decode at once (0.15 per extra sequence:
    # four at once take 1.45 × as long per token, for 2.8 × the tokens a second of one alone).
    "local": {"latency_ms": 50.0, "ms_per_token": 25.0, "prefill_ms_per_token": 1.0, "capacity": 4,
              "shared_decode": 0.15},
}


def profile_settings(name: str, **overrides: Any) -> dict[str, Any]:
    """The SimServer keyword arguments of profile `name`, with `overrides` (those not None) on top."""
    if name not in PROFILES:
        raise ValueError(f"unknown simulator profile {name!r}: choose from {', '.join(PROFILES)}")
    return {**PROFILES[name], **{key: value for key, value in overrides.items() if value is not None}}


def describe(name: str) -> str:
    """One line for a benchmark table: the profile and its figures."""
    p = PROFILES[name]
    slots = "unlimited slots" if not p["capacity"] else f"{p['capacity']} slots"
    shared = f", shared decode {p['shared_decode']}" if p["shared_decode"] else ""
    return (f"profile {name}: {slots}, first token {p['latency_ms']:.0f} ms, prefill {p['prefill_ms_per_token']} "
            f"ms/token, decode {p['ms_per_token']:.0f} ms/token{shared}")
