"""A Batch API input file as the LLM simulator reads it: its requests, and the validation errors OpenAI reports
for it (`file_too_large`, `empty_file`, `too_many_tasks`, `invalid_json_line`, `invalid_request`,
`invalid_url`, `duplicate_custom_id`)."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

__all__ = ["Line", "parse_input"]

_MAX_ERRORS = 1000  # a failed batch lists at most this many validation errors


class Line(NamedTuple):
    """One validated request of a batch: its custom_id, body and the line as uploaded."""

    custom_id: str
    body: dict[str, Any]
    raw: bytes


def parse_input(content: bytes, endpoint: str, max_file_bytes: int,
                max_lines: int) -> tuple[list[Line], list[dict[str, Any]]]:
    """Return the input file's requests and its validation errors (OpenAI's BatchError shape)."""
    def error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict[str, Any]:
        return {"code": code, "message": message, "param": param, "line": line}

    if len(content) > max_file_bytes:
        return [], [error("file_too_large", f"The batch input file is larger than the {max_file_bytes} maximum. "
                                            "Please try again with a smaller batch.")]
    numbered = [(n, raw) for n, raw in enumerate(content.split(b"\n"), 1) if raw.strip()]
    if not numbered:
        return [], [error("empty_file", "The batch input file is empty.")]
    if len(numbered) > max_lines:
        return [], [error("too_many_tasks", f"The batch input file has {len(numbered)} requests, more than the "
                                            f"{max_lines} maximum. Please try again with a smaller batch.")]
    lines: list[Line] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n, raw in numbered:
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            errors.append(error("invalid_json_line", "This line is not parseable as valid JSON.", n))
        elif not isinstance(obj.get("custom_id"), str) or not obj["custom_id"]:
            errors.append(error("invalid_request", "Each request needs a string 'custom_id'.", n, "custom_id"))
        elif obj.get("method") != "POST":
            errors.append(error("invalid_request", "The request 'method' must be 'POST'.", n, "method"))
        elif obj.get("url") != endpoint:
            errors.append(error("invalid_url", f"The request url {obj.get('url')!r} does not match the batch's "
                                               f"endpoint {endpoint!r}.", n, "url"))
        elif not isinstance(obj.get("body"), dict):
            errors.append(error("invalid_request", "The request 'body' must be an object.", n, "body"))
        elif obj["custom_id"] in seen:
            errors.append(error("duplicate_custom_id", "The custom_id for this request is a duplicate of another "
                                "request. The custom_id parameter must be unique for each request in a batch.", n,
                                "custom_id"))
        else:
            seen.add(obj["custom_id"])
            lines.append(Line(obj["custom_id"], obj["body"], raw))
        if len(errors) >= _MAX_ERRORS:
            break
    return lines, errors
