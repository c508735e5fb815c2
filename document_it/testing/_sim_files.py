"""The LLM simulator's Files API: uploaded files and batch result files, in memory (POST/GET/DELETE /v1/files),
and the ids, 404s and cursor pages OpenAI's list endpoints use."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable

from document_it.testing._sim_faults import ApiError

__all__ = ["FileStore", "new_id", "not_found", "cursor_page"]

_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


def new_id(prefix: str) -> str:
    """An object id as OpenAI writes them: a prefix and 24 hex digits."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def not_found(kind: str, object_id: str) -> ApiError:
    """OpenAI's 404 for an unknown object."""
    return ApiError(404, f"No such {kind} object: {object_id}", param="id")


def cursor_page(items: list[dict[str, Any]], has_more: bool = False) -> dict[str, Any]:
    """OpenAI's cursor page."""
    return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": has_more}


class FileStore:
    """Uploaded files and batch result files, in memory."""

    def __init__(self, bump: Callable[..., None], fail_uploads: int = 0) -> None:
        self._bump = bump
        self._fail_uploads = fail_uploads  # the first uploads answered 503 (a server briefly overloaded)
        self._files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self._lock = threading.Lock()

    def upload(self, content: bytes | None, filename: str | None, purpose: str | None) -> dict[str, Any]:
        """Store a client's upload (POST /v1/files) and return its FileObject."""
        with self._lock:
            failing, self._fail_uploads = self._fail_uploads > 0, max(0, self._fail_uploads - 1)
        if failing:
            raise ApiError(503, "The server is overloaded, please try again later.", kind="server_error")
        if content is None:
            raise ApiError(400, "Missing required parameter: 'file'.", param="file")
        if not purpose:
            raise ApiError(400, "Missing required parameter: 'purpose'.", param="purpose")
        if purpose not in _PURPOSES:
            raise ApiError(400, f"'{purpose}' is not one of {list(_PURPOSES)} - 'purpose'", param="purpose")
        if purpose == "batch" and not (filename or "").endswith(".jsonl"):
            raise ApiError(400, "Invalid file format for Batch API. Must be .jsonl", param="file")
        entry = self.add(content, filename or "upload", purpose)
        self._bump(files_uploaded=1)
        return entry

    def add(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        """Store `content` and return its FileObject."""
        entry = {"id": new_id("file-"), "object": "file", "bytes": len(content), "created_at": int(time.time()),
                 "filename": filename, "purpose": purpose, "status": "processed", "expires_at": None,
                 "status_details": None}
        with self._lock:
            self._files[entry["id"]] = (entry, content)
        return dict(entry)

    def get(self, file_id: str) -> dict[str, Any]:
        """Return the FileObject, or raise 404."""
        return dict(self._entry(file_id)[0])

    def content(self, file_id: str) -> bytes:
        """Return the file's bytes, or raise 404."""
        return self._entry(file_id)[1]

    def delete(self, file_id: str) -> dict[str, Any]:
        """Forget the file; return OpenAI's deletion status."""
        with self._lock:
            if self._files.pop(file_id, None) is None:
                raise not_found("File", file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    def list(self, purpose: str | None = None) -> dict[str, Any]:
        """Return the files, newest first (GET /v1/files)."""
        with self._lock:
            entries = [dict(e) for e, _ in reversed(self._files.values())]
        return cursor_page([e for e in entries if purpose in (None, e["purpose"])])

    def _entry(self, file_id: str) -> tuple[dict[str, Any], bytes]:
        with self._lock:
            found = self._files.get(file_id)
        if found is None:
            raise not_found("File", file_id)
        return found
