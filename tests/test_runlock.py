"""One run per --state-dir: a live holder in another process blocks, a dead one's lock is taken over."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from document_it.core.runlock import RunLock, holder
from document_it.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

_HOLD = """
import sys
from pathlib import Path
from document_it.core.runlock import RunLock
with RunLock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the test closes our stdin
"""


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.kill()
    child.wait(timeout=30)


def test_a_run_in_another_process_blocks_until_it_exits(tmp_path):
    state = tmp_path / "state"
    child = subprocess.Popen([sys.executable, "-c", _HOLD, str(state)], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline() == "locked\n"
        assert holder(state) == child.pid
        with pytest.raises(ConfigError) as caught:
            with RunLock(state):
                pass
        assert f"another document-it run (pid {child.pid}) is using --state-dir {state}" in str(caught.value)
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    finally:
        _stop(child)
    assert holder(state) is None
    with RunLock(state):
        assert holder(state) == os.getpid()
        assert (state / "run.lock").read_text() == f"{os.getpid()}\n"
    assert (state / "run.lock").read_text() == ""  # left in place, emptied
    assert holder(state) is None


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, caplog):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        child.wait(timeout=30)
    finally:
        _stop(child)
    (tmp_path / "run.lock").write_text(f"{child.pid}\n")
    assert holder(tmp_path) is None
    with caplog.at_level(logging.INFO, logger="document_it.core.runlock"):
        with RunLock(tmp_path):
            assert (tmp_path / "run.lock").read_text() == f"{os.getpid()}\n"
    assert f"taking over the lock left by pid {child.pid} (no longer running)" in caplog.text


def test_a_second_lock_in_the_same_process_is_refused(tmp_path):
    state = tmp_path / "new" / "state"
    with RunLock(state):
        with pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
            with RunLock(state):
                pass
        assert holder(state) == os.getpid()  # the refused attempt did not disturb the holder
    with RunLock(state):  # and once released it can be taken again
        pass


def test_an_unreadable_pid_is_reported_as_unknown(tmp_path):
    with RunLock(tmp_path):
        (tmp_path / "run.lock").write_text("garbage")
        with pytest.raises(ConfigError, match=r"\(pid unknown\)"):
            with RunLock(tmp_path):
                pass
