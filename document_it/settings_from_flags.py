"""Parsed flags (their defaults already read from DOCUMENT_IT_* variables) → one checked, frozen Settings."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any, Mapping, TypeVar

from .config import (SAMPLE_SOURCE, Answers, BatchApi, Fallback, LLMKind, Mode, Settings, StructuredMethod,
                     TaskStrategy, chosen_outputs, page_tasks, resolve_llm)
from .errors import ConfigError
from .models import PAGE_TASKS

__all__ = ["settings_from_args", "env_name", "switch"]

E = TypeVar("E")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def env_name(flag: str) -> str:
    """The environment variable that sets `flag`'s default: --max-workers → DOCUMENT_IT_MAX_WORKERS."""
    return f"DOCUMENT_IT_{flag.upper().replace('-', '_')}"


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Settings:
    """One frozen Settings from parsed flags (environment defaults already applied)."""
    if args.source is not None and not str(args.source).strip():
        raise ConfigError("--source is empty")
    ints = {name: _number(args, name, int) for name in
            ("max_workers", "analysis_workers", "max_concurrency", "batch_size", "batch_max_tokens", "retries",
             "max_depth", "max_pages", "per_host", "chunk_tokens")}
    floats = {name: _number(args, name, float) for name in
              ("request_timeout", "sim_latency_ms", "rpm", "tpm", "max_wait", "cache_size_mb", "delay",
               "dask_timeout", "parse_timeout")}
    grace = _number(args, "grace", float)
    optional = {name: None if getattr(args, name) in (None, "") else _number(args, name, kind)
                for name, kind in (("limit", int), ("max_cost", float), ("max_tokens", int),
                                   ("context_tokens", int), ("price_in", float), ("price_out", float))}
    fetch_timeout, page_mb = _number(args, "fetch_timeout", float), _number(args, "max_page_mb", float)
    if not math.isfinite(page_mb) or page_mb <= 0:
        raise ConfigError(f"--max-page-mb must be a positive number (got {args.max_page_mb})")
    if not math.isfinite(grace) or grace < 0:
        raise ConfigError(f"--grace must be a non-negative number of seconds (got {args.grace})")
    base_url = args.llm_base_url or None
    batch = _batch_options(args)
    resume = switch(args.resume, env, "resume") or batch["batch_api"] is BatchApi.IMPORT  # it goes on from an export
    return Settings(
        source=str(args.source or ("" if resume else SAMPLE_SOURCE)), output_dir=Path(args.output_dir), state_dir=Path(args.state_dir),
        mode=_choice(args, "parallelism_mode", Mode),
        llm=resolve_llm(_choice(args, "llm", LLMKind), env, base_url), llm_base_url=base_url,
        api_key=env.get("OPENAI_API_KEY") or None, model=args.model or "gpt-4o-mini",
        model_given=args.model is not None, sub_model=args.sub_model or None,
        extract_fields=tuple(f.strip() for f in (args.extract_fields or "").split(",") if f.strip()),
        tasks=PAGE_TASKS if args.tasks is None else page_tasks(args.tasks.split(",")),
        structured_output=_choice(args, "structured_output", StructuredMethod),
        task_strategy=_choice(args, "task_strategy", TaskStrategy), answers=_choice(args, "answers", Answers),
        fallback=_choice(args, "fallback", Fallback), quiet=switch(args.quiet, env, "quiet"),
        no_synthesis=switch(args.no_synthesis, env, "no-synthesis"), outputs=chosen_outputs(args.outputs.split(",")),
        no_cache=switch(args.no_cache, env, "no-cache"), refresh=switch(args.refresh, env, "refresh"),
        read_timeout=fetch_timeout, max_page_bytes=int(page_mb * 1024 * 1024),
        parse_memory_mb=_number(args, "parse_memory_mb", float) or None,
        allow_private=switch(args.allow_private, env, "allow-private"),
        allow_domains=tuple(args.allow_domain or ()), include=tuple(args.include or ()),
        exclude=tuple(args.exclude or ()), enable_queue=_queue_choice(args.enable_queue, env),
        resume=resume, incremental=switch(args.incremental, env, "incremental"), grace_s=grace,
        explicit=frozenset(getattr(args, "explicit", ())),
        **_dask_options(args, env), **batch,
        **ints, **floats, **optional,
    )


def _dask_options(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    """--dask-scheduler (ignored from DASK_SCHEDULER_ADDRESS outside dask mode) and --distributed-llm."""
    address = (args.dask_scheduler or "").strip() or None
    if address and args.parallelism_mode != Mode.DASK.value:
        if "--dask-scheduler" in getattr(args, "flags_given", ()):
            raise ConfigError("--dask-scheduler is for --parallelism-mode dask")
        address = None  # a scheduler address in the environment is for dask runs only
    return {"dask_scheduler": address, "distributed_llm": switch(args.distributed_llm, env, "distributed-llm")}


def _batch_options(args: argparse.Namespace) -> dict[str, Any]:
    """--batch-api [MODE [FILE]] (a word list; from DOCUMENT_IT_BATCH_API, words split by spaces), --batch-wait
    (a duration) and --batch-discount."""
    words = args.batch_api
    if isinstance(words, str):
        words = words.split()
    modes = ", ".join(mode.value for mode in BatchApi if mode is not BatchApi.OFF)
    if words is None:
        mode, file = BatchApi.OFF, None
    else:
        words = list(words) or ["on"]
        try:
            mode = BatchApi(words[0])
        except ValueError:
            raise ConfigError(f"--batch-api: {words[0]!r} is not a mode (choose from {modes})") from None
        file = Path(words[1]) if mode is BatchApi.IMPORT and len(words) == 2 else None
        if len(words) > (2 if mode is BatchApi.IMPORT else 1):
            raise ConfigError(f"--batch-api takes one mode ({modes}), and import a file: got {' '.join(words)!r}")
        if file is not None and not file.is_file():
            raise ConfigError(f"--batch-api import: {file} is not a file")
    return {"batch_api": mode, "batch_file": file, "batch_wait": duration(args.batch_wait, "--batch-wait"),
            "batch_discount": _number(args, "batch_discount", float)}


def duration(text: object, flag: str) -> float:
    """Seconds from "90", "90s", "15m", "24h" or "1d"; a ConfigError naming `flag` otherwise."""
    value = str(text).strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(value[-1:], None)
    try:
        seconds = float(value[:-1] if scale else value) * (scale or 1)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{flag} must be a duration such as 24h, 90m or 600 (got {text!r})")
    return seconds


def _number(args: argparse.Namespace, name: str, kind: type[int] | type[float]) -> Any:
    """The flag's value as `kind`; a ConfigError naming the flag and its environment variable if it is none."""
    value = getattr(args, name)
    try:
        return kind(value)
    except (TypeError, ValueError):
        flag = name.replace("_", "-")
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"--{flag} must be {what} (got {value!r} from the flag or {env_name(flag)})") from None


def _choice(args: argparse.Namespace, name: str, kind: type[E]) -> E:
    value = getattr(args, name)
    try:
        return kind(value)
    except ValueError:
        flag = "--" + name.replace("_", "-")
        allowed = ", ".join(member.value for member in kind)  # type: ignore[attr-defined]
        raise ConfigError(f"{flag} must be one of {allowed} (got {value!r} from {env_name(flag[2:])})") from None


def _queue_choice(flag: bool | None, env: Mapping[str, str]) -> bool | None:
    if flag is not None:
        return flag
    if env.get(env_name("enable-queue"), "").strip() == "":
        return None
    return switch(None, env, "enable-queue")


def switch(flag: bool | None, env: Mapping[str, str], name: str) -> bool:
    if flag:
        return True
    value = env.get(env_name(name), "").strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise ConfigError(f"{env_name(name)} must be one of {', '.join(_TRUE + _FALSE[1:])} (got {value!r})")


