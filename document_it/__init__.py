"""document-it: turn a documentation site into structured, per-page analysis.

The public building blocks (imported on first use, so the command line starts fast):
`connect_llm`, `Parallelizer`/`ParallelizerBuilder`/`ParallelTask`/`VotingResult`, `parallel_query`/
`aparallel_query`, `ParallelProcessor`/`ProcessingRequest`/`ProcessedChunk`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "__version__", "connect_llm", "GatewayClient", "LLMClient", "PromptReply",
    "ParallelTask", "ParallelizerBuilder", "Parallelizer", "VotingResult", "VotingStrategy",
    "parallel_query", "aparallel_query",
    "ParallelProcessor", "ProcessingRequest", "ProcessedChunk",
]

__version__ = "0.1.0"

_LAZY = {"connect_llm": "analysis.client", "GatewayClient": "analysis.client"}


def __getattr__(name: str) -> Any:
    """Import a public name's module only when it is first used."""
    if name in __all__ and name != "__version__":
        from importlib import import_module

        module = import_module(f".{_LAZY.get(name, 'analysis.patterns')}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'document_it' has no attribute {name!r}")
