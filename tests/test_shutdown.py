"""Shutdown: the first stop request sets `stopping` and cancels after the grace period; a second cancels now."""

from __future__ import annotations

import asyncio
import signal

from document_it.core.shutdown import Shutdown


async def test_first_request_stops_new_work_and_cancels_after_the_grace_period():
    async def run() -> tuple[bool, bool]:
        async with Shutdown(grace_s=0.05) as shutdown:
            shutdown.request(signal.SIGTERM)
            stopping = shutdown.stopping.is_set()
            try:
                await asyncio.Event().wait()  # work that would never end on its own
            except asyncio.CancelledError:
                return stopping, shutdown.signum == signal.SIGTERM
        return False, False

    assert await asyncio.create_task(run()) == (True, True)


async def test_a_second_request_cancels_at_once_despite_a_long_grace_period():
    cancelled = asyncio.Event()

    async def run() -> None:
        async with Shutdown(grace_s=3600) as shutdown:
            shutdown.request(signal.SIGINT)
            await asyncio.sleep(0)
            shutdown.request(signal.SIGINT)
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()

    await asyncio.wait_for(asyncio.create_task(run()), timeout=10)
    assert cancelled.is_set()


async def test_signal_handlers_are_put_back_afterwards():
    before = signal.getsignal(signal.SIGTERM)

    async def run() -> None:
        async with Shutdown(grace_s=1):
            pass

    await asyncio.create_task(run())
    assert signal.getsignal(signal.SIGTERM) is before
