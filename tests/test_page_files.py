"""pages/ and llms-full.txt: one clean Markdown file per completed page under a name no URL can steer, the
whole site in one file in llms.txt's order, and nightly runs that rewrite only what changed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from hypothesis import given, strategies as st

from document_it.cli import main
from document_it.config import SAMPLE_SOURCE
from document_it.markdown_page import normalise_markdown
from document_it.page_files import page_file_name

SAMPLE = Path(SAMPLE_SOURCE).parent


def _run(source: Path, out: Path, *flags: str) -> int:
    return main(["--source", str(source), "--output-dir", str(out), "--quiet", *flags])


def _completed(out: Path) -> list[dict]:
    rows = map(json.loads, (out / "results.jsonl").read_text().splitlines())
    return [row for row in rows if row["status"] == "completed"]


def test_every_completed_page_gets_a_markdown_file_and_a_place_in_llms_full(tmp_path):
    out = tmp_path / "out"
    assert _run(SAMPLE / "llms.txt", out, "--state-dir", str(tmp_path / "state")) == 0
    pages = _completed(out)
    files = {path.name: path.read_text() for path in (out / "pages").iterdir()}
    assert sorted(files) == sorted(page_file_name(row["url"]) for row in pages) and len(files) == 38
    install = files[page_file_name((SAMPLE / "pages" / "install.md").as_uri())]
    assert install == normalise_markdown((SAMPLE / "pages" / "install.md").read_text())  # a source passes through
    intro = files[page_file_name((SAMPLE / "pages" / "introduction.html").as_uri())]
    assert intro.startswith("# Introduction to Ferry\n") and "```python\n" in intro
    full = (out / "llms-full.txt").read_text()
    assert full.startswith("# Ferry\n")
    starts = [full.index(f"Source: {row['url']}\n") for row in pages]
    assert len(set(starts)) == 38
    listed = re.findall(r"\]\((\S+?)\)", (out / "llms.txt").read_text())
    assert [row for row in listed] == sorted(listed, key=lambda url: full.index(f"Source: {url}\n"))  # one order


def test_a_nightly_run_rewrites_a_changed_page_drops_a_removed_one_and_keeps_the_rest(tmp_path):
    site = tmp_path / "site"
    shutil.copytree(SAMPLE, site)
    nightly = ["--incremental", "--state-dir", str(tmp_path / "state")]
    assert _run(site / "llms.txt", tmp_path / "n1", *nightly) == 0
    before = {path.name: path.read_bytes() for path in (tmp_path / "n1" / "pages").iterdir()}
    changed, gone = site / "pages" / "retries.md", "pages/scheduling.html"
    changed.write_text(changed.read_text() + "\nOne more paragraph about retries.\n")
    (site / "llms.txt").write_text("".join(line + "\n" for line in (site / "llms.txt").read_text().splitlines()
                                           if gone not in line))
    shutil.copytree(tmp_path / "n1", tmp_path / "n2")  # the same folder, night after night
    assert _run(site / "llms.txt", tmp_path / "n2", *nightly) == 0
    after = {path.name: path.read_bytes() for path in (tmp_path / "n2" / "pages").iterdir()}
    changed_name, gone_name = page_file_name(changed.as_uri()), page_file_name((site / gone).as_uri())
    assert gone_name in before and gone_name not in after
    assert b"One more paragraph about retries." in after[changed_name]
    assert {name: data for name, data in after.items() if name != changed_name} == \
        {name: data for name, data in before.items() if name not in (changed_name, gone_name)}
    full = (tmp_path / "n2" / "llms-full.txt").read_text()
    assert "One more paragraph about retries." in full and f"Source: {(site / gone).as_uri()}\n" not in full


def test_a_dated_folder_each_night_still_gets_the_unchanged_pages(tmp_path):
    """A nightly run into a new folder: pages not analysed again are written from the Markdown kept with them."""
    nightly = ["--incremental", "--state-dir", str(tmp_path / "state")]
    assert _run(SAMPLE / "llms.txt", tmp_path / "night1", *nightly) == 0
    assert _run(SAMPLE / "llms.txt", tmp_path / "night2", *nightly) == 0
    first = {p.name: p.read_bytes() for p in (tmp_path / "night1" / "pages").iterdir()}
    assert {p.name: p.read_bytes() for p in (tmp_path / "night2" / "pages").iterdir()} == first
    assert (tmp_path / "night2" / "llms-full.txt").read_bytes() == (tmp_path / "night1" / "llms-full.txt").read_bytes()


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_no_url_steers_a_page_files_name(path):
    name = page_file_name(f"https://docs.example.org/{path}")
    assert re.fullmatch(r"[a-z0-9-]*-[0-9a-f]{10}\.md", name) and len(name) <= 80 and ".." not in name
