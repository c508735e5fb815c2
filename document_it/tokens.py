"""Offline token estimates: no tokenizer files, no downloads."""

from __future__ import annotations

import math

__all__ = ["estimate_tokens", "tokens_for_chars", "CHARS_PER_TOKEN"]

CHARS_PER_TOKEN = 4.0


def estimate_tokens(text: str) -> int:
    """Approximate the number of LLM tokens in `text` (about four characters per token)."""
    return tokens_for_chars(len(text))


def tokens_for_chars(length: int) -> int:
    """Approximate tokens in a text of `length` characters."""
    if length <= 0:
        return 0
    return max(1, math.ceil(length / CHARS_PER_TOKEN))
