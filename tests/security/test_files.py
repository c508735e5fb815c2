"""What a run writes: the state dir private (0700), outputs ordinary files, nothing half-written."""

from __future__ import annotations

import os
import stat

from document_it.cli import main


def test_the_state_dir_is_private_and_outputs_are_ordinary_files(tmp_path):
    old = os.umask(0o022)
    try:
        (tmp_path / "state").mkdir(mode=0o755)  # an existing, open state dir is closed up too
        code = main(["--output-dir", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state"), "--quiet",
                     "--limit", "3"])
    finally:
        os.umask(old)
    assert code == 0
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    for name in ("results.jsonl", "report.md", "run.json"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o644, name
    assert not list((tmp_path / "out").glob("*.tmp")) and not list((tmp_path / "out").glob(".*"))
