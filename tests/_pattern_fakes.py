"""Fakes shared by the pattern tests: an echoing llm and a recorder of progress callbacks."""

from __future__ import annotations

from typing import Any

__all__ = ["echo", "Recorder"]


async def echo(prompt: str) -> str:
    return f"answer to {prompt}"


class Recorder:
    """Progress callbacks that remember what they were told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, Any]] = []

    def on_start(self, key: Any) -> None:
        self.events.append(("start", key, None))

    async def on_result(self, key: Any, value: Any) -> None:  # async on purpose: both kinds are accepted
        self.events.append(("result", key, value))

    def on_error(self, key: Any, message: str) -> None:
        self.events.append(("error", key, message))

    def kwargs(self) -> dict[str, Any]:
        return {"on_start": self.on_start, "on_result": self.on_result, "on_error": self.on_error}

    def of(self, kind: str) -> dict[Any, Any]:
        return {key: value for event, key, value in self.events if event == kind}
