"""Small JSON files in the state dir that later runs read (what a server was found to take): read leniently,
written whole through a temp file and a rename, so a crash never leaves half a file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["read_state", "write_state", "private_dir"]


def read_state(path: Path | None) -> dict[str, Any]:
    """The JSON object in `path`; empty when there is none, or it is unreadable or not an object."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` with `data` as JSON, atomically; raises OSError when it cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def private_dir(path: Path) -> None:
    """Make `path` (the --state-dir: cached answers, the job queue) readable by its owner only, 0700;
    raises OSError when it cannot be made. A folder someone else owns is left as it is."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid == os.getuid():
        path.chmod(0o700)
