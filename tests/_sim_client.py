"""What the simulator's tests send it: answer models and one json_schema chat request over loopback."""

from __future__ import annotations

import threading
from typing import Any

import requests
from pydantic import BaseModel, Field

from document_it.testing.llm_sim import SimServer


class KeyConcept(BaseModel):
    """One concept from a page."""

    name: str
    description: str
    importance: int = Field(ge=1, le=10)


class KeyConcepts(BaseModel):
    """Concepts from a page."""

    items: list[KeyConcept]


class Short(BaseModel):
    """A tiny answer."""

    label: str


class Long(BaseModel):
    """A large answer."""

    summaries: list[str] = Field(min_length=30, max_length=30)


def json_schema_format(model: type[BaseModel]) -> dict[str, Any]:
    """Return an OpenAI json_schema response_format for `model`."""
    spec = {"name": model.__name__, "schema": model.model_json_schema(), "strict": False}
    return {"type": "json_schema", "json_schema": spec}


def chat(sim: SimServer, user: str, *, model: type[BaseModel] = KeyConcepts, **extra: Any) -> requests.Response:
    """POST one json_schema chat completion to the simulator."""
    messages = [{"role": "system", "content": "Extract."}, {"role": "user", "content": user}]
    body = {"model": "gpt-4o-mini", "messages": messages, "response_format": json_schema_format(model), **extra}
    return requests.post(f"{sim.base_url}/chat/completions", json=body, timeout=10)



def fire(sim: SimServer, count: int) -> list[int]:
    """Send `count` concurrent chat requests; return their status codes."""
    barrier = threading.Barrier(count)
    statuses: list[int] = []

    def one(i: int) -> None:
        barrier.wait()
        statuses.append(chat(sim, f"request {i}", model=Short).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return statuses
