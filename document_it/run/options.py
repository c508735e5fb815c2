"""A run's options as the job queue keeps them, and what --resume restores of them: a resumed run goes on
with the source, outputs, LLM and analyses it was started with, except what the user sets again."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

from ..config import Answers, BatchApi, LLMKind, Mode, Settings, StructuredMethod, TaskStrategy, page_tasks
from ..core.job_queue import JobQueue
from ..errors import ConfigError
from .batch_files import imported

__all__ = ["resumed_settings", "stored_options"]


# what --resume restores unless given again: where results go, what analyses the pages, how to fetch
_RESUMED = ("output_dir", "allow_private", "llm", "llm_base_url", "model", "sub_model", "structured_output", "mode",
            "per_host", "delay", "extract_fields", "tasks", "task_strategy", "answers", "no_synthesis", "outputs",
            "batch_api")
_FROM_OPTION: dict[str, Any] = {"output_dir": Path, "llm": LLMKind, "structured_output": StructuredMethod,
                                "extract_fields": tuple, "tasks": page_tasks, "outputs": tuple,
                                "mode": Mode, "task_strategy": TaskStrategy, "answers": Answers, "batch_api": BatchApi}


def stored_options(chosen: Settings) -> dict[str, Any]:
    """The settings a new run keeps for --resume, as JSON stores them."""
    stored = {name: getattr(chosen, name) for name in _RESUMED}
    if stored["batch_api"] is BatchApi.SUBMIT_ONLY:  # --resume is the later run that waits and collects
        stored["batch_api"] = BatchApi.ON
    return {name: _option(value) for name, value in stored.items()}


def resumed_settings(settings: Settings) -> Settings:
    """For --resume: the unfinished run's source and options, except those the user set this time."""
    with JobQueue(settings.jobs_path) as queue:
        info = queue.unfinished_run()
        if info is not None and settings.batch_api is BatchApi.IMPORT:
            assert settings.batch_file is not None
            imported(queue, settings.batch_file)  # a wrong file is a one-line error before the run reopens
    if info is None and settings.batch_api is BatchApi.IMPORT:
        raise ConfigError(f"--batch-api import goes on with an exported run, and none waits in {settings.state_dir} "
                          "(run --batch-api export first)")
    if info is None:
        raise ConfigError(f"nothing to resume in {settings.state_dir}: no run was interrupted there "
                          "(run again without --resume)")
    if settings.source and settings.source != info.source:
        raise ConfigError(f"--resume continues the run over {info.source}; drop --source or start a new run")
    kept = {name: _FROM_OPTION.get(name, lambda v: v)(value)
            for name, value in info.options.get("settings", {}).items() if name not in settings.explicit}
    return settings.with_(source=info.source, incremental=bool(info.options.get("incremental")), **kept)


def _option(value: Any) -> Any:
    """A setting as JSON stores it (paths and enums as strings, tuples such as --tasks as lists); _FROM_OPTION
    turns it back."""
    if isinstance(value, tuple):
        return [_option(item) for item in value]
    return str(value) if isinstance(value, Path) else value.value if isinstance(value, enum.Enum) else value
