"""Settings: every knob in one frozen dataclass, built once from flags and environment."""

from __future__ import annotations

import enum
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping
from urllib.parse import urlparse

from .errors import ConfigError
from .models import PAGE_TASKS, Task
from .scope import check_scope_flags

__all__ = [
    "Mode",
    "LLMKind",
    "StructuredMethod",
    "TaskStrategy",
    "Answers",
    "Fallback",
    "BatchApi",
    "Settings",
    "SAMPLE_SOURCE",
    "OUTPUTS",
    "MARKDOWN_OUTPUTS",
    "chosen_outputs",
    "PLACEHOLDER_KEY",
    "resolve_llm",
    "page_tasks",
    "check_scheduler_address",
]

_FIELD = re.compile(r"^[A-Za-z_][\w-]{0,63}$")
SAMPLE_SOURCE = str(Path(__file__).parent / "data" / "sample" / "llms.txt")
OUTPUTS = ("report.md", "report.html", "llms.txt", "llms-full.txt", "pages")  # --outputs' choice; results.jsonl
MARKDOWN_OUTPUTS = frozenset({"llms-full.txt", "pages"})  # and run.json always; these need each page's Markdown
PLACEHOLDER_KEY = "no-key-needed"  # sent when no key is set: servers that want some key, any key, take it


class Mode(str, enum.Enum):
    """Where each stage runs (see ARCHITECTURE.md, 'Modes are data')."""

    SYNC = "sync"
    ASYNC = "async"
    PROCESS = "process"
    HYBRID = "hybrid"
    DASK = "dask"  # parsing and CPU work on a Dask distributed cluster (docs/distributed.md)


class LLMKind(str, enum.Enum):
    """Which analyser answers the prompts."""

    AUTO = "auto"
    OPENAI = "openai"
    SIMULATE = "simulate"
    EXTRACTIVE = "extractive"


class StructuredMethod(str, enum.Enum):
    """How the model is asked for structured output."""

    AUTO = "auto"  # json_schema, else function calling, else json_mode: the first the server takes
    JSON_SCHEMA = "json_schema"
    FUNCTION_CALLING = "function_calling"
    JSON_MODE = "json_mode"


class TaskStrategy(str, enum.Enum):
    """How a page's analyses are asked (--task-strategy)."""

    AUTO = "auto"  # combined, except where separate requests pay (see docs/benchmarks.md, "One reading per page")
    COMBINED = "combined"  # one request per page returns every asked analysis (a part per task)
    SEPARATE = "separate"  # one request per page and task


class Answers(str, enum.Enum):
    """How long a page's answers are asked to be (--answers)."""

    AUTO = "auto"  # full, brief on a server that writes slowly (see analysis/gateway.py, BRIEF_TOKEN_S)
    FULL = "full"  # up to 6 items a list, a sentence each
    BRIEF = "brief"  # up to 3 items a list (2 code patterns), shorter strings


class Fallback(str, enum.Enum):
    """What answers when the LLM stays down."""

    NONE = "none"
    EXTRACTIVE = "extractive"


class BatchApi(str, enum.Enum):
    """Whether prompts go to the provider's Batch API (--batch-api; docs/nightly.md)."""

    OFF = "off"
    ON = "on"  # submit, wait, collect; lines that failed are asked again live
    STRICT = "strict"  # lines that failed go in a new batch, never live
    SUBMIT_ONLY = "submit-only"  # submit and exit 0; --resume or the next nightly run collects
    EXPORT = "export"  # write the batch input JSONL and stop (self-hosters run it, e.g. vllm run-batch)
    IMPORT = "import"  # read an output JSONL in the same format and go on from it


BATCH_MAX_LINES = 50_000  # OpenAI's limits for one batch's input file; a server with lower ones refuses it and
BATCH_MAX_BYTES = 200 * 1024 * 1024  # the run splits the file in halves


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know, decided before it starts."""

    source: str = SAMPLE_SOURCE
    output_dir: Path = Path("output")
    state_dir: Path = Path(".document_it")
    mode: Mode = Mode.HYBRID
    max_workers: int = 8
    analysis_workers: int = field(default_factory=lambda: os.cpu_count() or 2)
    max_concurrency: int = 20
    batch_size: int = 0
    batch_max_tokens: int = 0  # 0: what the context window holds beside the answers
    limit: int | None = None
    llm: LLMKind = LLMKind.EXTRACTIVE
    llm_base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    model: str = "gpt-4o-mini"
    model_given: bool = True  # False when the CLI got no --model: the server's first listed model may be used
    sub_model: str | None = None  # per-chunk work on long pages (default: the same model)
    extract_fields: tuple[str, ...] = ()  # named fields read from every page (--extract-fields)
    tasks: tuple[Task, ...] = PAGE_TASKS  # the analyses asked of every page (--tasks)
    task_strategy: TaskStrategy = TaskStrategy.AUTO  # all of them in one request, or one request each
    answers: Answers = Answers.AUTO  # full, or brief (fewer items, shorter strings)
    no_synthesis: bool = False  # per-page analyses only, no topic syntheses (--no-synthesis)
    outputs: tuple[str, ...] = OUTPUTS  # the files written beside results.jsonl and run.json (--outputs)
    structured_output: StructuredMethod = StructuredMethod.AUTO
    context_tokens: int | None = None  # the model's context window; None: from the server, else 8192
    request_timeout: float = 60.0
    # gateway: limits, retries, breaker, budgets
    rpm: float = 0.0
    tpm: float = 0.0
    retries: int = 3
    max_wait: float = 300.0
    fallback: Fallback = Fallback.NONE
    price_in: float | None = None
    price_out: float | None = None
    max_cost: float | None = None
    max_tokens: int | None = None
    # the provider's Batch API (run/batch_rounds.py)
    batch_api: BatchApi = BatchApi.OFF
    batch_file: Path | None = None  # --batch-api import FILE
    batch_wait: float = 24 * 3600.0  # how long a run waits for its batches before it leaves them to --resume
    batch_discount: float = 0.5  # the batch price is the live price times (1 - this)
    batch_max_lines: int = BATCH_MAX_LINES
    batch_max_bytes: int = BATCH_MAX_BYTES
    # cache
    no_cache: bool = False
    refresh: bool = False
    cache_size_mb: float = 1024.0
    sim_latency_ms: float = 400.0
    quiet: bool = False
    # fetch limits
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_page_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5
    allow_private: bool = False
    # crawl (when --source is a page rather than an index) and politeness
    max_depth: int = 2
    max_pages: int = 500
    allow_domains: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    per_host: int = 4
    delay: float = 0.0
    host_share: int = 1  # worker processes sharing each host's politeness (set for process mode's workers)
    # job queue, resume and nightly runs
    enable_queue: bool | None = None  # True: a queued run; False: a temporary job database
    resume: bool = False
    incremental: bool = False
    grace_s: float = 5.0
    explicit: frozenset[str] = frozenset()  # fields the user set (flag or environment); --resume keeps those
    # parse
    chunk_tokens: int = 800
    parse_timeout: float = 30.0  # seconds one page may take to parse; past it the page fails
    parse_memory_mb: float | None = 1024.0  # what a parse worker process may use beyond its resting size; None: no cap
    # dask mode
    dask_scheduler: str | None = None  # tcp://HOST:8786; None: a LocalCluster sized to this machine
    distributed_llm: bool = False  # LLM requests on the workers too, under a cluster-wide semaphore
    dask_timeout: float = 10.0  # seconds to reach the scheduler

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "retries", "max_wait"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative (got {getattr(self, name)})")
        for name in ("max_cost", "max_tokens", "price_in", "price_out"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative (got {value})")
        for name in ("max_workers", "analysis_workers", "max_concurrency", "chunk_tokens", "max_page_bytes",
                     "max_pages", "per_host"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if self.max_depth < 0:
            raise ConfigError(f"--max-depth must not be negative (got {self.max_depth})")
        if not math.isfinite(self.delay) or self.delay < 0:
            raise ConfigError(f"--delay must be a non-negative number of seconds (got {self.delay})")
        check_scope_flags(self.allow_domains, self.include, self.exclude)
        object.__setattr__(self, "tasks", page_tasks(self.tasks))  # one order, so equal choices key the same
        for name in self.extract_fields:
            if not _FIELD.match(name):
                raise ConfigError(f"--extract-fields: {name!r} is not a field name (letters, digits, _ and -)")
        if len(set(self.extract_fields)) != len(self.extract_fields):
            raise ConfigError("--extract-fields names a field twice")
        if self.extract_fields and self.llm is LLMKind.EXTRACTIVE:
            raise ConfigError("--extract-fields needs an LLM: set OPENAI_API_KEY or --llm-base-url, or use "
                              "--llm simulate")
        if self.enable_queue is False and (self.resume or self.incremental):
            raise ConfigError("--resume and --incremental need the job queue; drop --no-queue")
        if self.context_tokens is not None and self.context_tokens < 1024:
            raise ConfigError(f"--context-tokens must be at least 1024 (got {self.context_tokens})")
        if self.batch_size < 0:
            raise ConfigError(f"--batch-size must be 0 (auto), 1 (off) or more (got {self.batch_size})")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1 (got {self.limit})")
        for name in ("request_timeout", "read_timeout", "connect_timeout", "dask_timeout", "parse_timeout"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                flag = {"read_timeout": "--fetch-timeout", "connect_timeout": "the connect timeout",
                        "dask_timeout": "--dask-timeout", "parse_timeout": "--parse-timeout"}.get(
                    name, "--request-timeout")
                raise ConfigError(f"{flag} must be a positive number of seconds (got {value})")
        for name in ("rpm", "tpm", "max_wait", "sim_latency_ms"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number")
        if self.parse_memory_mb is not None and not (math.isfinite(self.parse_memory_mb) and self.parse_memory_mb > 0):
            raise ConfigError(f"--parse-memory-mb must be a positive number of megabytes, or 0 for no cap "
                              f"(got {self.parse_memory_mb})")
        if self.llm_base_url is not None:
            parsed = urlparse(self.llm_base_url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ConfigError(f"--llm-base-url must be an http(s) URL such as http://127.0.0.1:8000/v1 "
                                  f"(got {self.llm_base_url!r})")
        if self.distributed_llm and self.mode is not Mode.DASK:
            raise ConfigError("--distributed-llm needs --parallelism-mode dask")
        if self.dask_scheduler is not None:
            check_scheduler_address(self.dask_scheduler)
        self._check_batch_api()
        if self.llm is LLMKind.AUTO:
            raise ConfigError("internal: resolve --llm auto before building Settings")
        if self.llm is LLMKind.OPENAI and not (self.api_key or self.llm_base_url):
            raise ConfigError("--llm openai needs OPENAI_API_KEY or --llm-base-url")

    def _check_batch_api(self) -> None:
        if not (math.isfinite(self.batch_wait) and self.batch_wait >= 0):
            raise ConfigError(f"--batch-wait must be a duration such as 24h, 90m or 600 (got {self.batch_wait})")
        if not (0 <= self.batch_discount < 1):
            raise ConfigError(f"--batch-discount must be a fraction from 0 to below 1, e.g. 0.5 for half price "
                              f"(got {self.batch_discount})")
        if self.batch_max_lines < 1 or self.batch_max_bytes < 1024:
            raise ConfigError("the batch file limits must be at least 1 line and 1 kB")
        if self.batch_api is BatchApi.OFF:
            return
        if (self.batch_api is BatchApi.IMPORT) != (self.batch_file is not None):
            raise ConfigError("--batch-api import needs the output file to read: --batch-api import FILE")
        if self.llm is LLMKind.EXTRACTIVE and not self.resume:  # --resume restores the run's LLM
            raise ConfigError("--batch-api needs an LLM: set OPENAI_API_KEY or --llm-base-url, or use --llm simulate")
        if self.enable_queue is False:
            raise ConfigError("--batch-api keeps its batches in the job queue; drop --no-queue")
        if self.mode in (Mode.PROCESS, Mode.DASK):
            raise ConfigError(f"--batch-api runs in sync, async or hybrid mode, not {self.mode.value}: its requests "
                              "wait for the provider, not for this machine's cores")

    @property
    def batch_on(self) -> bool:
        """True when prompts go to the provider's Batch API (or a batch file) instead of one request each."""
        return self.batch_api is not BatchApi.OFF

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    @property
    def jobs_path(self) -> Path:
        return self.state_dir / "jobs.sqlite"

    @property
    def provider_name(self) -> str:
        """The label every output carries for who answered."""
        if self.llm is LLMKind.EXTRACTIVE:
            return "extractive"
        return "simulate" if self.llm is LLMKind.SIMULATE else "openai"

    @property
    def model_name(self) -> str:
        return "extractive-v1" if self.llm is LLMKind.EXTRACTIVE else self.model

    def with_(self, **changes: object) -> "Settings":
        """A copy with some fields changed (used to hand workers their share)."""
        return replace(self, **changes)


def page_tasks(names: Iterable[str | Task]) -> tuple[Task, ...]:
    """The page analyses `names` choose, in PAGE_TASKS order; a ConfigError names the valid ones."""
    valid = {task.value: task for task in PAGE_TASKS}
    choose = f"(choose from {', '.join(valid)})"
    chosen = [str(getattr(name, "value", name)).strip() for name in names]
    chosen = [name for name in chosen if name]
    for name in chosen:
        if name not in valid:
            raise ConfigError(f"--tasks: {name!r} is not a page analysis {choose}")
        if chosen.count(name) > 1:
            raise ConfigError(f"--tasks names {name!r} twice {choose}")
    if not chosen:
        raise ConfigError(f"--tasks needs at least one page analysis {choose}")
    return tuple(task for task in PAGE_TASKS if task.value in chosen)




def chosen_outputs(names: Iterable[str]) -> tuple[str, ...]:
    """The outputs `names` choose ("all": every one, "none": only the run's own record), in OUTPUTS order; a
    ConfigError names the valid ones."""
    chosen = [name.strip() for name in names if name.strip()]
    choose = f"(choose from {', '.join(OUTPUTS)}, all or none)"
    if chosen == ["all"]:
        return OUTPUTS
    if chosen == ["none"]:
        return ()
    for name in chosen:
        if name not in OUTPUTS:
            raise ConfigError(f"--outputs: {name!r} is not an output {choose}")
    if not chosen:
        raise ConfigError(f"--outputs needs at least one output {choose}")
    return tuple(name for name in OUTPUTS if name in chosen)


def check_scheduler_address(address: str) -> None:
    """A ConfigError unless `address` reads as a Dask scheduler address (tcp://HOST:PORT and the like)."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme not in ("tcp", "tls", "ws", "wss") or not parsed.hostname or not port \
            or parsed.path not in ("", "/"):
        raise ConfigError(f"--dask-scheduler must be a scheduler address such as tcp://10.0.0.5:8786 "
                          f"(got {address!r})")


def resolve_llm(kind: LLMKind, env: Mapping[str, str], base_url: str | None) -> LLMKind:
    """`auto` means openai when a key or base URL is configured, else the offline analyser."""
    if kind is not LLMKind.AUTO:
        return kind
    if env.get("OPENAI_API_KEY") or base_url:
        return LLMKind.OPENAI
    return LLMKind.EXTRACTIVE
