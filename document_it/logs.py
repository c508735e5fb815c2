"""Log output for people (`text`) or for log collectors (`json`: one object per line), secrets redacted."""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone

from .redact import printable, redact

__all__ = ["setup_logging", "JsonFormatter", "LOG_FORMATS", "PROGRESS_LOGGER"]

LOG_FORMATS = ("text", "json")
PROGRESS_LOGGER = "document_it.progress"
_HANDLER = "document-it"


class _Redacting(logging.Filter):
    """Removes the API key (and anything shaped like one) and terminal escape sequences from every message."""

    def __init__(self, secrets: tuple[str | None, ...]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = printable(redact(record.getMessage(), self._secrets)), None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, pid (+ the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": os.getpid(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(verbose: bool, fmt: str = "text", secrets: tuple[str | None, ...] = ()) -> None:
    """Configure the root logger for one run of the command."""
    handler = logging.StreamHandler()
    handler.set_name(_HANDLER)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_Redacting(secrets))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER]:  # ours from an earlier call only
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger(PROGRESS_LOGGER).setLevel(logging.INFO)  # progress lines show without --verbose
