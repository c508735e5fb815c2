"""Nothing a page or a server sends can drive the user's terminal: escape sequences and control characters
are removed from every log line and from what the command prints. Fails without `redact.printable`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from document_it.redact import printable

ROOT = Path(__file__).resolve().parents[2]
ESCAPES = "\x1b[2J\x1b[31mred\x1b[0m \x1b]0;pwned\x07title \x9b1Aup \x07bell \x08back \u202eevil"


def test_printable_removes_escape_sequences_and_control_characters():
    assert printable(ESCAPES) == "red title up bell back evil"
    assert printable("two\nlines\tand a tab") == "two\nlines\tand a tab"


def test_escape_sequences_from_an_index_never_reach_the_terminal(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Page\n\nSome text about the page, long enough to analyse.\n")
    (tmp_path / "llms.txt").write_text(f"# Site\n\n- [Page](page.md): fine\n- ](broken {ESCAPES} line\n")
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--source", str(tmp_path / "llms.txt"),
                           "--output-dir", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state"),
                           "--quiet"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "does not read as a link" in done.stderr  # the warning is shown, without the page's escapes
    for text in (done.stderr, done.stdout):
        assert "\x1b" not in text and "\x9b" not in text and "\x07" not in text and "\u202e" not in text
