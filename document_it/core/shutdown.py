"""Stopping gracefully: the first Ctrl-C or SIGTERM stops new work and gives pages under way a few seconds;
a second one stops at once. Either way the caller still writes what finished."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from typing import Any

__all__ = ["Shutdown"]

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Shutdown:
    """Signal handlers on the running loop for the lifetime of one run (`async with Shutdown(5.0) as s`)."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.signum: int | None = None
        self.stopping = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._previous: dict[int, Any] = {}

    async def __aenter__(self) -> "Shutdown":
        self._task = asyncio.current_task()
        if threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            for signum in _SIGNALS:
                self._previous[signum] = signal.getsignal(signum)
                loop.add_signal_handler(signum, self._on_signal, signum)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._timer:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        for signum, previous in self._previous.items():
            loop.remove_signal_handler(signum)
            signal.signal(signum, previous)  # the CLI's own handlers again, not the defaults

    @property
    def stopped(self) -> bool:
        return self.signum is not None

    def request(self, signum: int = signal.SIGINT) -> None:
        """Stop as a signal would (also used by tests and by a budget that runs out)."""
        self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
            self.stopping.set()
            log.warning("stopping: no new pages; pages under way get %.0f s to finish (signal again to stop now)",
                        self.grace_s)
            if self._task is not None:
                self._timer = asyncio.get_running_loop().call_later(self.grace_s, self._task.cancel)
        elif self._task is not None:
            self._task.cancel()
