"""One document-it run per --state-dir: an flock on <state-dir>/run.lock, which the kernel drops when its run dies."""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from document_it.errors import ConfigError

__all__ = ["RunLock", "StateDirBusy", "holder"]

log = logging.getLogger(__name__)

_NAME = "run.lock"


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode("ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        pass
    return True


def holder(state_dir: Path) -> int | None:
    """The pid of the live process holding the run lock of `state_dir`, or None when it is free."""
    try:
        fd = os.open(Path(state_dir) / _NAME, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        pid = _read_pid(fd)
        if pid is None or not _alive(pid):  # probe the flock only then, so a free lock is never held here
            return None
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # taken: nobody holds it (the pid was reused)
        return None
    except BlockingIOError:
        return pid
    finally:
        os.close(fd)  # also releases the probe


class StateDirBusy(ConfigError):
    """Another run holds the state dir."""


class RunLock:
    """Context manager holding `state_dir` for this process; raises StateDirBusy when another run holds it."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / _NAME
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot lock --state-dir {self.state_dir}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StateDirBusy(f"another document-it run (pid {'unknown' if pid is None else pid}) is using --state-dir "
                              f"{self.state_dir}; wait for it to finish, or use another --state-dir or --no-queue") from None
        if (old := _read_pid(fd)) is not None and old != os.getpid() and not _alive(old):
            log.info("taking over the lock left by pid %d (no longer running)", old)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)  # the file stays: removing it would race with the next run taking it
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
