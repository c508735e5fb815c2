"""What a run writes: the state dir private (0700), outputs ordinary files, nothing half-written."""

from __future__ import annotations

import json
import os
import stat

import pytest

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


HOSTILE = ["..%2F..%2F..%2Fevil-escape.html", "%2Fetc%2Fevil-abs.html", "evil%00nul.html", "CON", "aux.html",
           "NUL.txt", "evil-" + "a" * 240 + ".html", "evil%5C..%5Cback.html", "evil%0Anewline.html"]


def test_page_urls_never_become_file_paths(tmp_path):
    from document_it.testing.site import SiteServer

    site_root = tmp_path / "site"
    site_root.mkdir()
    (site_root / "ok.html").write_text("<html><body><h1>Fine</h1><p>A page.</p></body></html>")
    (site_root / "llms.txt").write_text("# Hostile names\n\n## Pages\n\n- [ok](ok.html)\n"
                                        + "".join(f"- [x]({name})\n" for name in HOSTILE))
    with SiteServer(site_root, max_seconds=60) as site:
        code = main(["--source", site.url("llms.txt"), "--output-dir", str(tmp_path / "out"),
                     "--state-dir", str(tmp_path / "state"), "--quiet", "--enable-queue"])
    assert code == 3  # the hostile pages are 404s on this site
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["llms-full.txt", "llms.txt", "pages", "report.html", "report.md", "results.jsonl", "run.json"]
    written = [p for p in tmp_path.rglob("*") if not p.is_relative_to(site_root)]
    assert not [p for p in written if "evil" in p.name or p.name.upper().startswith(("CON", "AUX", "NUL"))]
    assert not list(tmp_path.parent.glob("evil*")) and not list(tmp_path.glob("evil*"))


def test_a_local_index_reaches_no_file_outside_its_folder(tmp_path):
    from document_it.errors import SourceError
    from document_it.sources import discover

    secret = tmp_path / "secret.md"
    secret.write_text("# Secret\n\nkey material\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "page.md").write_text("# Page\n\nText.\n")
    (docs / "link.md").symlink_to(secret)
    (docs / "llms.txt").write_text(
        "# Index\n\n- [ok](page.md)\n- [up](../secret.md)\n- [abs](" + str(secret) + ")\n"
        f"- [uri]({secret.as_uri()})\n- [nul](page.md%00.md)\n- [sym](link.md)\n")
    assert [ref.url for ref in discover(str(docs / "llms.txt")).refs] == [(docs / "page.md").as_uri()]
    assert [ref.url for ref in discover(str(docs)).refs] == [(docs / "page.md").as_uri()]  # the symlink is left out
    (docs / "urls.txt").write_text(f"{secret.as_uri()}\n")
    with pytest.raises(SourceError, match="no pages found"):
        discover(str(docs / "urls.txt"))


def test_outputs_inside_a_source_folder_are_never_read_back_as_pages(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text("# Guide\n\nHow to use it.\n")
    argv = ["--source", str(docs), "--output-dir", str(docs / "out"), "--state-dir", str(docs / ".state"), "--quiet"]
    assert main(argv) == 0 and main(argv) == 0  # the second run finds the first one's report.md in the folder
    lines = (docs / "out" / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["url"] for line in lines] == [(docs / "guide.md").as_uri()]
