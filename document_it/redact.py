"""Keep secrets out of anything a user or a log file will see."""

from __future__ import annotations

import re
from typing import Iterable

__all__ = ["redact", "printable"]

# ANSI escape sequences (CSI, OSC, two-character ones)
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|\x9b[0-?]*[ -/]*[@-~]")
# C0/C1 controls, zero-width characters and bidirectional overrides: they hide or reorder what is shown
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_KEYLIKE = re.compile(r"(sk-[A-Za-z0-9_\-*]{6,}|Bearer\s+[A-Za-z0-9._\-]{6,})")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with the given secrets and anything shaped like an API key replaced by `***`."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _KEYLIKE.sub("***", text)


def printable(text: str) -> str:
    """`text` safe to show on a terminal: escape sequences and control characters (from pages, servers,
    file names) removed, so nothing we print can move the cursor, recolour, retitle or hide what follows.
    Newlines and tabs stay."""
    return _CONTROL.sub("", _ESCAPES.sub("", text))
