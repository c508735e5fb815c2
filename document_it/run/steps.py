"""One page's steps after its download: parse and analyse, each failure recorded on the page's result (a
fatal LLM error stops the run)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..config import Settings
from ..core.dispatcher import Stages
from ..errors import BatchDeferred, DocumentItError, LLMFatalError, ParseError, WorkerLost
from ..models import DocRef, DocResult, DocStatus, Fetched, ParsedDoc

if TYPE_CHECKING:
    from ..analysis.agent import PageAgent

__all__ = ["parse_step", "analyze_page", "failed_result"]

log = logging.getLogger(__name__)


async def parse_step(fetched: Fetched, stages: Stages, settings: Settings,
                     timings: dict[str, float], again: bool = False) -> ParsedDoc | DocResult:
    """The parsed page, or the failed result saying why it could not be parsed (`again`: parsed before)."""
    clock = time.perf_counter()
    try:
        return await stages.parse(fetched, again)
    except (ParseError, WorkerLost) as exc:
        return failed_result(fetched.ref, settings, "parse", str(exc), timings=timings)
    except Exception as exc:  # a bug or an unexpected library error on one page: record it, keep the run going
        log.exception("unexpected error parsing %s", fetched.ref.url)
        return failed_result(fetched.ref, settings, "parse", f"unexpected {type(exc).__name__}: {exc}",
                             timings=timings)
    finally:
        timings["parse"] = _lap(clock)


async def analyze_page(ref: DocRef, page: ParsedDoc, agent: PageAgent, settings: Settings,
                       timings: dict[str, float]) -> DocResult:
    """Run the agent over one parsed page; failures land on the result (a fatal LLM error stops the run)."""
    clock = time.perf_counter()
    try:
        stored = agent.remembered(page)  # looked up here, so the result can say it made no request
        analysis = stored if stored is not None else await agent.analyze(page)
    except (LLMFatalError, BatchDeferred):
        raise
    except DocumentItError as exc:
        return failed_result(ref, settings, "analyze", str(exc), page.title, timings, page.text_tokens)
    except Exception as exc:  # a bug or an unexpected library error: record it, keep the run going
        log.exception("unexpected error analysing %s", ref.url)
        return failed_result(ref, settings, "analyze", f"unexpected {type(exc).__name__}: {exc}", page.title, timings,
                             page.text_tokens)
    finally:
        timings["analyze"] = _lap(clock)
    fields = None
    if settings.extract_fields:
        from ..analysis.fields import extract_fields

        clock = time.perf_counter()
        fields = await extract_fields(page, agent.gateway, settings.extract_fields, settings.model)
        timings["fields"] = _lap(clock)
    return DocResult(url=ref.url, title=page.title, topic=ref.topic, status=DocStatus.COMPLETED,
                     provider=settings.provider_name, model=settings.model_name,
                     analysis=analysis.model_dump(), timings=timings, tasks=[task.value for task in agent.tasks],
                     fallback_tasks=agent.gateway.fell_back.get(page.url, []), fields=fields,
                     text_tokens=page.text_tokens, reused=stored is not None,
                     place={key: value for key, value in vars(page.place).items() if value} or None)


def failed_result(ref: DocRef, settings: Settings, stage: str, reason: str, title: str = "",
                  timings: dict[str, float] | None = None, text_tokens: int = 0) -> DocResult:
    """A page that did not make it, and at which stage (`text_tokens`: its text's, once parsed)."""
    return DocResult(url=ref.url, title=title or ref.title, topic=ref.topic, status=DocStatus.FAILED,
                     error=f"{stage}: {reason}", provider=settings.provider_name,
                     model=settings.model_name, timings=timings or {}, text_tokens=text_tokens)


def _lap(start: float) -> float:
    return round(time.perf_counter() - start, 4)
