"""Batch files: lines cut into files within the provider's limits, and the JSONL a batch's output comes back in;
for self-hosters, the batch input written to the output folder (--batch-api export) and an output file read
back (--batch-api import, the format `vllm run-batch` writes)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

from ..analysis.batch_api import ENDPOINT
from ..core.batch_ledger import BatchKind, BatchRecord, LineRecord
from ..core.job_queue import JobQueue
from ..errors import ConfigError
from ..report import atomic_write_text

__all__ = ["cut", "jsonl", "records", "export", "imported"]


def cut(lines: list[LineRecord], max_lines: int, max_bytes: int) -> Iterator[list[LineRecord]]:
    """The lines in files of at most `max_lines` lines and `max_bytes` bytes (a line larger than that alone)."""
    part: list[LineRecord] = []
    size = 0
    for line in lines:
        length = len(line.jsonl(ENDPOINT).encode()) + 1
        if part and (len(part) >= max_lines or size + length > max_bytes):
            yield part
            part, size = [], 0
        part.append(line)
        size += length
    if part:
        yield part


def jsonl(lines: list[LineRecord]) -> bytes:
    """A batch input file."""
    return "".join(line.jsonl(ENDPOINT) + "\n" for line in lines).encode()


def records(text: str) -> dict[str, dict[str, Any]]:
    """custom_id -> output record, from a batch output or error file (lines that are not JSON are skipped)."""
    found: dict[str, dict[str, Any]] = {}
    for raw in text.split("\n"):  # not splitlines(): JSON may hold U+2028 and its kind unescaped
        with contextlib.suppress(ValueError):
            record = json.loads(raw)
            if isinstance(record, dict) and isinstance(record.get("custom_id"), str):
                found.setdefault(record["custom_id"], record)
    return found


def export(queue: JobQueue, run_id: int, lines: list[LineRecord], folder: Path, max_lines: int,
           max_bytes: int) -> list[Path]:
    """Write the lines as batch input files in `folder`, each recorded once written; their paths."""
    paths = []
    number = max((record.id for record in queue.batches()), default=0)
    for part in cut(lines, max_lines, max_bytes):
        data = jsonl(part)
        number += 1
        while (folder / f"batch-input-{number}.jsonl").exists():  # never over an earlier file
            number += 1
        path = (folder / f"batch-input-{number}.jsonl").resolve()
        atomic_write_text(path, data.decode())  # written before it is recorded: a recorded file exists
        queue.add_batch(run_id, BatchKind.FILE, [line.custom_id for line in part], len(data), path=str(path))
        paths.append(path)
    return paths


def imported(queue: JobQueue, path: Path) -> tuple[dict[str, dict[str, Any]], list[BatchRecord]]:
    """The output records `path` holds and the exported files it answers; a ConfigError for a file that is not
    a batch output, or answers none of them."""
    try:
        found = records(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--batch-api import: cannot read {path}: {exc}") from None
    if not any("response" in record or "error" in record for record in found.values()):
        raise ConfigError(f"--batch-api import: {path} is not a batch output file (no line has a custom_id with "
                          "a response or an error; the input file has neither)")
    exported = queue.open_batches(BatchKind.FILE)
    if not exported:
        raise ConfigError("--batch-api import: no exported batch file waits for answers (run --batch-api export "
                          "first, with the same --state-dir)")
    covered = [record for record in exported
               if any(line.custom_id in found for line in queue.lines_of(record.id))]
    if not covered:
        raise ConfigError(f"--batch-api import: {path} answers none of the exported requests (its custom_ids are "
                          f"not those of {', '.join(str(record.path) for record in exported)})")
    return found, covered
