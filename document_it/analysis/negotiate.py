"""Which structured-output method a server takes: forced by --structured-output, or (auto) tried in turn —
json_schema, then function calling, then json_mode with tolerant parsing — and the one that worked
remembered per (base URL, model) in the state dir, so later runs start with it."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ..config import StructuredMethod
from ..core.state_file import read_state, write_state

__all__ = ["MethodChoice", "METHOD_ORDER", "refuses_method", "STORE_NAME"]

log = logging.getLogger(__name__)

METHOD_ORDER = (StructuredMethod.JSON_SCHEMA, StructuredMethod.FUNCTION_CALLING, StructuredMethod.JSON_MODE)
STORE_NAME = "structured_output.json"

# what servers say when they do not take a response_format or tools (llama.cpp, vLLM, Ollama, LM Studio, ...)
_REFUSAL = re.compile(r"response_format|json_schema|json schema|json_object|tool|function|grammar|"
                      r"not supported|unsupported|not implemented|unknown (?:field|parameter)|extra (?:fields|inputs)",
                      re.IGNORECASE)


def refuses_method(status: int, message: str) -> bool:
    """True when an error reply says the server does not take the structured-output method we used."""
    return status not in (401, 403, 408, 409, 429) and status >= 400 and bool(_REFUSAL.search(message))


class MethodChoice:
    """The method to use with one server and model, and what happens when the server refuses it."""

    def __init__(self, requested: StructuredMethod, store: Path | None, server: str) -> None:
        self.forced = requested is not StructuredMethod.AUTO
        self._store, self._server = store, server
        remembered = None if self.forced else read_state(store).get(server)
        first = requested if self.forced else _method(remembered) or StructuredMethod.JSON_SCHEMA
        self.order = [first] + ([] if self.forced else [m for m in METHOD_ORDER if m is not first])
        self._index = 0
        self.settled = self.forced
        self.refusals: list[str] = []  # what each refused method got back, for the error if all are refused

    @property
    def current(self) -> StructuredMethod:
        return self.order[self._index]

    def refused(self, method: StructuredMethod, reason: str) -> bool:
        """The server refused `method`: move on to the next one. False when there is none to try (a forced
        method, or every method refused). Requests that failed at once with the same method move on once, and
        one sent with a method left behind meanwhile is asked again with the current one, even when that
        one has been seen to work since (the refusal is old news, not a reason to give up)."""
        if method is not self.current:
            return True
        if self.forced or self.settled:
            return False
        self.refusals.append(f"{method.value}: {reason}")
        if self._index + 1 >= len(self.order):
            return False
        self._index += 1
        log.info("the LLM server refused structured output by %s (%s); trying %s", method.value, reason,
                 self.current.value)
        return True

    def summary(self) -> dict[str, object]:
        """run.json's view: the method in use, whether it was negotiated (auto) or forced, what was refused."""
        return {"method": self.current.value, "negotiated": not self.forced, "settled": self.settled,
                "refused": list(self.refusals)}

    def worked(self, method: StructuredMethod) -> None:
        """A valid answer came back with `method`: keep it for this run and remember it for the next."""
        if self.settled or method is not self.current:
            return
        self.settled = True
        log.info("structured output: %s works with this server and model", method.value)
        stored = read_state(self._store)
        if self._store is not None and stored.get(self._server, StructuredMethod.JSON_SCHEMA.value) != method.value:
            try:  # only what differs from the first guess is written down
                write_state(self._store, {**stored, self._server: method.value})
            except OSError as exc:  # remembering is an optimisation; the run goes on
                log.info("could not remember the structured-output method: %s", exc)


def _method(value: object) -> StructuredMethod | None:
    try:
        method = StructuredMethod(value)
    except ValueError:
        return None
    return method if method in METHOD_ORDER else None
