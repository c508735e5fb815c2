"""Offline token estimates: no tokenizer files, no downloads."""

from __future__ import annotations

import math

__all__ = ["estimate_tokens", "CHARS_PER_TOKEN"]

CHARS_PER_TOKEN = 4.0


def estimate_tokens(text: str) -> int:
    """Approximate the number of LLM tokens in `text` (about four characters per token)."""
    if not text:
        return 0
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))
