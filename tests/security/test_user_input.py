"""Mistakes users make on purpose or by accident: each ends as one clear line on stderr and the right exit
code (2 a bad source or flag, 4 a file that cannot be written), or as a run that reads what it can;
finished results are never lost or half-written."""

from __future__ import annotations

import gc
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from document_it.cli import main
from document_it.testing.site import SiteServer

ROOT = Path(__file__).resolve().parents[2]
PAGE = "<html><body><h1>{title}</h1><p>{body}</p></body></html>"


def _fails(capsys, argv: list[str], code: int, fragment: str) -> str:
    """The run ends with one error line (after any warnings naming what was skipped, one line each)."""
    gc.collect()  # what earlier tests left for the collector says its piece now, not during this run
    capsys.readouterr()
    assert main(argv) == code
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("document-it: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert all(line.startswith(("WARNING ", "document-it: error:")) for line in lines), lines
    assert fragment in errors[0] and not any("Traceback" in line for line in lines), lines
    return errors[0]


def _args(tmp_path: Path, source: str, *extra: str) -> list[str]:
    return ["--source", source, "--output-dir", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state"),
            "--quiet", *extra]


@pytest.mark.parametrize("name, data, fragment", [
    ("binary.txt", b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4, "is a binary file"),
    ("empty.txt", b"", "no pages found"),
    ("headings.txt", b"# Title\n\n> summary\n\n## Section\n\nprose but no links\n", "lists no links"),
    ("broken.txt", b"# T\n\n- [a](\n- [b](https://a]b/c)\n- [c](javascript:alert(1))\n", "no pages found"),
    ("urls.txt", b"https://docs.example.test/a page.html\n", "line 1 of the URL list is not a URL"),
    ("bad.xml", b'<?xml version="1.0"?><urlset><url><loc>https://docs.exa', "is not valid XML"),
    ("junk.xml", b'<?xml version="1.0"?><urlset><url><loc>not a url</loc></url><url><loc>javascript:x</loc>'
                 b"</url></urlset>", "no pages found"),
    ("page.html", b"<!doctype html><html><body>hi</body></html>", "is an HTML page, not an index"),
])
def test_a_bad_index_is_one_line_and_exit_2(tmp_path, capsys, name, data, fragment):
    (tmp_path / name).write_bytes(data)
    _fails(capsys, _args(tmp_path, str(tmp_path / name)), 2, fragment)


def test_empty_and_missing_sources_are_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _fails(capsys, _args(tmp_path, str(tmp_path / "empty")), 2, "no pages found")
    _fails(capsys, _args(tmp_path, str(tmp_path / "nowhere")), 2, "source not found")
    _fails(capsys, _args(tmp_path, " "), 2, "--source is empty")
    _fails(capsys, _args(tmp_path, "ftp://docs.example.test/llms.txt"), 2, "unsupported source")


def test_a_device_or_pipe_as_source_is_refused_not_read_forever(tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe")  # nobody writes to it: reading would block for ever
    _fails(capsys, _args(tmp_path, str(tmp_path / "pipe")), 2, "not a regular file")
    if Path("/dev/zero").exists():  # endless bytes: reading would fill the memory
        _fails(capsys, _args(tmp_path, "/dev/zero"), 2, "not a regular file")


def test_a_url_list_with_spaces_and_duplicates_is_read_once_per_page(tmp_path, capsys):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.html").write_text(PAGE.format(title="A", body="First page."))
    (tmp_path / "site" / "b.html").write_text(PAGE.format(title="B", body="Second page."))
    with SiteServer(tmp_path / "site", max_seconds=60) as site:
        (tmp_path / "urls.txt").write_text(f"  {site.url('a.html')}  \n\n\t{site.url('b.html')}\n"
                                           f"{site.url('a.html')}\n{site.url('a.html')}#part\n# a comment\n")
        assert main(_args(tmp_path, str(tmp_path / "urls.txt"))) == 0
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["title"] for line in lines) == ["A", "B"]


def test_mislabelled_and_unusual_encodings_are_read(tmp_path, capsys):
    site_root = tmp_path / "site"
    site_root.mkdir()
    pages = {  # what the bytes are, and what the server or the page claims
        "latin1-sent-as-utf8.html": (PAGE.format(title="Café crème", body="Une page déjà écrite " * 30)
                                     .encode("cp1252"), "utf-8"),
        "utf8-sent-as-latin1.html": (PAGE.format(title="Grüße", body="Schöne Grüße " * 30).encode(), "iso-8859-1"),
        "bogus-charset.html": (PAGE.format(title="Naïve", body="A naïve page.").encode(), "x-no-such-charset"),
        "utf16.html": (PAGE.format(title="Wide", body="A page in UTF-16.").encode("utf-16"), None),
        "meta-sjis.html": (('<html><head><meta charset="shift_jis"></head><body><h1>日本語</h1><p>説明です。</p>'
                            "</body></html>").encode("shift_jis"), None),
        "undefined.html": (PAGE.format(title="Déjà", body="A label made by a script bug.").encode("cp1252"),
                           "undefined"),
        "codec-meta.html": (b"<html><head><meta charset=raw_unicode_escape></head><body><h1>Trap</h1>"
                            b"<p>\\ud800 caf\xe9</p></body></html>", None),
    }
    plain = {"wide.txt": ("A log excerpt\x1b[31m in UTF-16, no byte-order mark.\n\nSecond paragraph."
                          .encode("utf-16-le"), "utf-16le")}
    for name, (data, _) in {**pages, **plain}.items():
        (site_root / name).write_bytes(data)
    with SiteServer(site_root, max_seconds=60) as site:  # /_charset sends the claim as Content-Type's charset
        urls = [site.url(f"_charset?file={name}" + (f"&charset={charset}" if charset else ""))
                for name, (_, charset) in pages.items()]
        urls += [site.url(f"_charset?file={name}&type=text/plain&charset={charset}")
                 for name, (_, charset) in plain.items()]
        (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
        assert main(_args(tmp_path, str(tmp_path / "urls.txt"))) == 0, capsys.readouterr().err
    results = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    titles = {r["url"].split("file=", 1)[1].split("&", 1)[0]: r["title"] for r in results}
    assert all(r["status"] == "completed" for r in results) and len(results) == len(pages) + len(plain)
    assert {name: titles[name] for name in pages} == {
        "latin1-sent-as-utf8.html": "Café crème", "utf8-sent-as-latin1.html": "Grüße", "bogus-charset.html": "Naïve",
        "utf16.html": "Wide", "meta-sjis.html": "日本語", "undefined.html": "Déjà", "codec-meta.html": "Trap"}


def test_an_index_in_utf16_is_read(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Page\n\nText.\n")
    (tmp_path / "docs" / "llms.txt").write_bytes("# Docs\n\n- [Page](page.md)\n".encode("utf-16"))
    assert main(_args(tmp_path, str(tmp_path / "docs" / "llms.txt"))) == 0, capsys.readouterr().err


def test_unusable_output_and_state_dirs_are_one_line(tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    _fails(capsys, ["--output-dir", str(tmp_path / "a-file"), "--quiet"], 2, "is a file")
    _fails(capsys, ["--output-dir", str(tmp_path / "a-file" / "out"), "--quiet"], 2, "a-file")
    _fails(capsys, ["--state-dir", str(tmp_path / "a-file"), "--output-dir", str(tmp_path / "o"), "--quiet"], 2,
           "is a file")
    _fails(capsys, ["--state-dir", str(tmp_path / "a-file" / "s"), "--output-dir", str(tmp_path / "o"), "--quiet"],
           2, "a-file")


def _limited(max_bytes: int):
    def apply() -> None:  # in the child: files may not grow past max_bytes, as on a disk that is full
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so write() fails with EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return apply


def test_a_full_disk_is_one_line_exit_4_and_keeps_every_whole_result(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--output-dir", str(out), "--state-dir", str(tmp_path / "state"),
         "--quiet", "--no-cache", "--no-queue"],
        capture_output=True, text=True, timeout=180, preexec_fn=_limited(30_000),
        env={**os.environ, "DOCUMENT_IT_ALLOW_PRIVATE": "1"})
    assert done.returncode == 4, done.stderr[-2000:]
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and "results.jsonl" in err and "File too large" in err, err
    lines = (out / "results.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["status"] == "completed" for line in lines)  # whole lines only
    report = (out / "report.md").read_text()
    assert "This run did not finish" in report and report.endswith("\n")
    assert json.loads((out / "run.json").read_text())["status"].startswith("aborted: cannot write")
