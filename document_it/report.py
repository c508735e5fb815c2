"""Outputs: streamed results.jsonl, report.md, report.html and run.json, all written without half-files."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from .config import OUTPUTS
from .llms_txt import llms_order, render_llms_txt
from .errors import OutputError
from .page_files import PAGES_DIR, page_files, render_llms_full, stale_page_files
from .models import DocResult
from .report_html import render_html
from .report_model import (FALLBACK_NOTE, NO_OVERVIEW, REUSED_NOTE, PageEntry, Related, Report, TopicEntry,
                           build_report, counted, plain, web_address)

__all__ = ["atomic_write_text", "ResultStream", "write_outputs", "render_report", "one_line", "link_target"]

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so readers see the old file or the whole new one, never a part."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are ordinary files
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; the file there before is left as it was") \
            from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: str | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            Path(tmp).unlink(missing_ok=True)


class ResultStream:
    """Appends one JSON line per finished document, flushed at once, so a crash loses nothing done."""

    def __init__(self, path: Path, append: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if append else os.O_TRUNC),
                                       0o666)  # unbuffered: each line is on disk, or not, when write returns

    def write(self, result: DocResult) -> None:
        """One whole line or, when the disk refuses it, none: a part written is cut off again."""
        data = (json.dumps(result.to_dict(), ensure_ascii=False) + "\n").encode("utf-8")
        if self._fd is None:
            raise OutputError(f"{self.path} is closed")
        start = os.fstat(self._fd).st_size
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}; the results finished before "
                              "are kept in it") from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def write_outputs(output_dir: Path, results: list[DocResult], synthesis: dict[str, Any],
                  summary: dict[str, Any], title: str, outputs: Iterable[str] = OUTPUTS,
                  markdown: Mapping[str, str] | None = None) -> None:
    """Final results.jsonl (sorted by URL) and run.json, and of report.md, report.html, llms.txt,
    llms-full.txt and pages/ those `outputs` names (pages in the order `results` gives them: the site's
    reading order; `markdown`: url -> each page's clean Markdown), each file replaced atomically. Each is tried
    even when one before it could not be written (a nearly full disk may still take the small ones); the first
    failure is raised at the end."""
    markdown = markdown or {}
    ordered = sorted(results, key=lambda r: r.url)
    report = functools.cache(lambda: build_report(list(results), synthesis, summary, title))  # one model, 2 formats
    failures: list[OutputError] = []
    for name, render in (
            ("results.jsonl", lambda: "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in ordered)),
            ("report.md", lambda: _markdown(report())),
            ("report.html", lambda: render_html(report())),
            ("llms.txt", lambda: render_llms_txt(list(results), synthesis, summary, title)),
            ("llms-full.txt", lambda: render_llms_full(llms_order(list(results), summary), markdown, title)),
            ("run.json", lambda: json.dumps(summary, indent=2) + "\n")):
        if name in OUTPUTS and name not in outputs:
            continue
        try:
            atomic_write_text(output_dir / name, render())
        except OutputError as exc:
            failures.append(exc)
    if "pages" in outputs:
        try:
            _write_pages(output_dir / PAGES_DIR, page_files(list(results), markdown))
        except OutputError as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


def _write_pages(folder: Path, files: dict[str, str]) -> None:
    """pages/: each page's file replaced atomically (the same bytes when the page did not change), and the
    files of pages this run no longer has removed."""
    for name, text in files.items():
        atomic_write_text(folder / name, text)
    for stale in stale_page_files(folder, set(files)):
        with contextlib.suppress(OSError):
            stale.unlink()


def render_report(results: list[DocResult], synthesis: dict[str, Any], summary: dict[str, Any],
                  title: str) -> str:
    """The human report, top down: what the site is, its topics and their pages, failures, the run's figures."""
    return _markdown(build_report(results, synthesis, summary, title))


def _markdown(report: Report) -> str:
    lines = [f"# {_md(report.title)} — analysis", "", _md(report.intro, start=True), ""]
    if report.unfinished:
        lines += [f"> {_md(report.unfinished_note, start=True)}", ""]
    lines += _overview(report) + _contents(report) + [_anchor("topics"), "## Topics", ""]
    for topic in report.topics:
        lines += _topic_section(topic)
    return "\n".join(lines + _failures(report) + _run(report))


def _anchor(name: str) -> str:
    """An explicit anchor on its own line: every renderer keeps it, whatever it makes of headings."""
    return f'<a id="{name}"></a>'


def _overview(report: Report) -> list[str]:
    lines = [_anchor("overview"), "## What the site is", ""]
    opening, lead = report.overview.opening, report.overview.lead
    if opening is not None:
        lines += [f"From its opening page, [{_md(opening.title)}](#{opening.anchor}): {_md(opening.summary)}", ""]
    if lead is not None:
        lines += [f"From the synthesis of the topic [{_md(lead.name)}](#{lead.anchor}): {_md(lead.overview)}", ""]
    if opening is None and lead is None:
        lines += [NO_OVERVIEW, ""]
    return lines


def _contents(report: Report) -> list[str]:
    failed = len(report.failures)
    return ["## Contents", "", "- [What the site is](#overview)", "- [Topics](#topics)",
            *(f"  - [{_md(topic.name)}](#{topic.anchor}): {topic.pages_note}" for topic in report.topics),
            f"- [Failures](#failures): {counted(failed, 'page') if failed else 'none'}", "- [Run](#run)", ""]


def _topic_section(topic: TopicEntry) -> list[str]:
    lines = [_anchor(topic.anchor), f"### {_md(topic.name)} ({topic.pages_note})", ""]
    if topic.overview:
        lines += [_md(topic.overview, start=True), ""]
    if topic.themes:
        lines += ["Key themes: " + ", ".join(_md(theme) for theme in topic.themes), ""]
    if topic.synthesis_error:
        lines += [f"_{_md(topic.synthesis_error)}_", ""]
    for page in topic.pages:
        lines += [_anchor(page.anchor), *_page_lines(page), ""]
    return lines


def _page_lines(page: PageEntry) -> list[str]:
    head = f"- **[{_md(page.title)}]({link_target(page.url)})**"
    if page.failed:
        return [f"{head} — failed: {_md(page.error or '')}"]
    lines = [head + (f" — {_md(page.summary)}" if page.summary else "")]  # no dangling dash without a summary
    if page.reused:
        lines.append(f"  - {REUSED_NOTE}")
    if page.fallback_tasks:
        lines.append(f"  - _{FALLBACK_NOTE}: " + ", ".join(_md(task) for task in page.fallback_tasks) + "_")
    for item_list in page.lists:
        if item_list.separator is None:  # one a line, each where a line starts
            lines += [f"  - {item_list.label}:", *(f"    - {_item(item, start=True)}" for item in item_list.items)]
        else:
            lines.append(f"  - {item_list.label}: " + item_list.separator.join(map(_item, item_list.items)))
    return lines


def _item(item: str | Related, start: bool = False) -> str:
    if isinstance(item, str):
        return _md(item, start)
    return f"[{_md(item.name)}](#{item.anchor})" if item.anchor else _md(item.name)


def _failures(report: Report) -> list[str]:
    lines = [_anchor("failures"), "## Failures", ""]
    lines += [f"- [{_md(page.title)}]({link_target(page.url)}): {_md(page.error or '')}" for page in report.failures] \
        or [report.failures_note]
    return lines + ["", *([report.failures_note, ""] if report.failures else [])]


def _run(report: Report) -> list[str]:
    return [_anchor("run"), "## Run", "", "| figure | value |", "|---|---|",
            *(f"| {_cell(figure.label)} | {_cell(figure.value)} |" for figure in report.figures), "",
            *(line for note in report.notes for line in (_md(note, start=True), "")),
            *([_md(report.work, start=True), ""] if report.work else [])]


def _cell(text: str) -> str:
    return _md(text).replace("|", "\\|")


def one_line(text: str, width: int = 300) -> str:
    """One line of page-derived text, cut to `width`, as Markdown that shows exactly that text: escape
    sequences and control characters are dropped (redact.printable), and what Markdown would misread (a link,
    an image, HTML, emphasis, a list or heading marker at the start) is backslash-escaped, nothing else."""
    return _md(plain(text, width), start=True)


_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")  # balanced: shown as code, nothing inside is markup
_SPECIAL = re.compile(r"[\\\[\]<*_~`&]")
_LINE_START = re.compile(r"^(?:[>]|#{1,6}(?=\s|$)|[-+](?=\s|$)|[-=\s]+$|\d{1,9}(?=[.)](?:\s|$)))")
_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_ENTITY = re.compile(r"&#?[A-Za-z0-9]+;")
_FLANKING = re.compile(r"(?<![^\W_])_|_(?![^\W_])")  # an underscore with no letter or digit on one side


def _md(text: str, start: bool = False) -> str:
    """`text`, one plain line, as Markdown: balanced code spans kept, every other markup character escaped
    where Markdown would read it as markup; a list, heading, quote or rule marker only when `start` (the text
    starts a line or a list item's content; after "- **[" or "### " it is no marker)."""
    lone = len(_FLANKING.findall(text)) < 2  # one underscore that is not inside a word has none to pair with
    parts, end = [], 0
    for span in _CODE_SPAN.finditer(text):
        parts += [_SPECIAL.sub(lambda m: _escape_char(text, m.start(), lone), text[end:span.start()]), span.group()]
        end = span.end()
    escaped = "".join(parts) + _SPECIAL.sub(lambda m: _escape_char(text, end + m.start(), lone), text[end:])
    return _LINE_START.sub(_escape_line_start, escaped, count=1) if start else escaped


def _escape_char(text: str, at: int, lone_underscore: bool) -> str:
    """The markup character at `text[at]`, escaped when its neighbours let Markdown read it as markup."""
    char = text[at]
    before, after = text[at - 1] if at else "", text[at + 1] if at + 1 < len(text) else ""
    keep = (char == "\\" and after and after not in _PUNCTUATION
            or char == "<" and not (after.isascii() and after.isalpha() or after and after in "/!?")
            or char in "*~" and before.isspace() and after.isspace()  # a lone star between spaces is no emphasis
            or char == "_" and (lone_underscore or before.isalnum() and after.isalnum())  # nor snake_case, _static
            or char == "&" and not _ENTITY.match(text, at))
    return char if keep else "\\" + char


def _escape_line_start(match: re.Match[str]) -> str:
    """A list, heading, quote or rule marker at the start of a line, escaped."""
    found = match.group()
    return found + "\\" if found[0].isdigit() else "\\" + found


def link_target(url: str) -> str:
    """`url` as a Markdown link destination: only http(s) and file URLs, in angle brackets, with the
    characters that could end it percent-encoded; anything else is not linked at all."""
    address = web_address(url)
    return "<#not-a-web-address>" if address is None else f"<{address}>"
