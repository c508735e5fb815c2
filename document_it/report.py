"""Outputs: streamed results.jsonl, report.md and run.json, all written without half-files."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from urllib.parse import quote, urlparse
from pathlib import Path
from typing import Any, Iterable

from .errors import OutputError
from .models import NO_TOPIC, DocResult, DocStatus
from .redact import printable

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
                  summary: dict[str, Any], title: str) -> None:
    """Final, sorted results.jsonl plus report.md and run.json, each replaced atomically. Each is tried even
    when one before it could not be written (a nearly full disk may still take the small ones); the first
    failure is raised at the end."""
    ordered = sorted(results, key=lambda r: r.url)
    failures: list[OutputError] = []
    for name, render in (
            ("results.jsonl", lambda: "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in ordered)),
            ("report.md", lambda: render_report(ordered, synthesis, summary, title)),
            ("run.json", lambda: json.dumps(summary, indent=2) + "\n")):
        try:
            atomic_write_text(output_dir / name, render())
        except OutputError as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


def render_report(results: list[DocResult], synthesis: dict[str, Any], summary: dict[str, Any],
                  title: str) -> str:
    """The human report: run figures, per-topic synthesis, per-page highlights, failures."""
    docs = summary["documents"]
    lines = [f"# {one_line(title or 'Documentation')} — analysis", ""]
    lines += [f"Analysed by **{summary['provider_label']}**, model `{summary['model']}`, "
              f"mode `{summary['mode']}`.", ""]
    status = str(summary.get("status") or "completed")
    if status != "completed":
        lines += [f"> **This run did not finish** ({one_line(status)}): {docs.get('not_reached', 0)} pages were "
                  "not reached; what follows covers the pages that finished.", ""]
    lines += _figures(summary)
    by_topic: dict[str, list[DocResult]] = {}
    for result in results:
        by_topic.setdefault(result.topic or NO_TOPIC, []).append(result)
    lines += ["## Topics", ""]
    for topic, members in by_topic.items():
        lines += _topic_section(topic, members, synthesis.get(topic))
    failed = [r for r in results if r.status is DocStatus.FAILED]
    lines += ["## Failures", ""]
    lines += [f"- [{one_line(r.title or r.url)}]({link_target(r.url)}): {one_line(r.error or '')}" for r in failed] \
        or ["None: every page completed." if not docs.get("not_reached") else "None of the pages reached failed."]
    lines.append("")
    if docs["failed"]:
        lines.append(f"{docs['failed']} of {docs['total']} pages failed; see results.jsonl for details.\n")
    return "\n".join(lines)


def _figures(summary: dict[str, Any]) -> list[str]:
    docs, llm, stages = summary["documents"], summary["llm"], summary["stages"]
    rows = [
        ("pages", f"{docs['total']} ({docs['completed']} completed, {docs['failed']} failed)"),
        ("wall time", f"{summary['wall_seconds']:.2f} s"),
        ("stage time, summed over pages", ", ".join(f"{k} {stages[k]:.2f} s" for k in ("fetch", "parse", "analyze")
                                                    if k in stages)),
        ("LLM time, summed over requests", f"waiting for a slot {stages.get('queue_wait', 0):.2f} s, "
                                           f"on the wire {stages.get('llm_wait', 0):.2f} s"),
        ("prompts", str(llm["prompts"])),
    ]
    resources = summary.get("resources")
    if resources:
        rows.append(("peak memory, all processes / CPU (peak, mean; 100 % = one core)",
                     f"{resources['peak_rss_mb']:.0f} MB over {resources['peak_processes']} processes / "
                     f"{resources['peak_cpu_percent']:.0f} %, {resources['mean_cpu_percent']:.0f} %"))
    if llm.get("requests"):
        latency = llm["latency_s"]
        cost = llm["cost_usd"]
        rows += [
            ("LLM requests (attempts, retries, 429s)",
             f"{llm['requests']} ({llm['attempts']} attempts, {llm['retries']} retries, {llm['rate_limited']} rate-limited)"),
            ("requests completed / failed", f"{llm['by_status']['completed']} / {llm['by_status']['failed']}"),
            ("latency p50 / p95 / max", f"{latency['p50']:.2f} / {latency['p95']:.2f} / {latency['max']:.2f} s"),
            ("tokens in / out", f"{llm['tokens_in']:,} / {llm['tokens_out']:,}"),
            ("estimated cost", "unknown price for this model" if cost is None else f"${cost:.4f}"),
            ("most requests in flight / window now", f"{llm['max_in_flight']} / {llm['window']['current']} "
                                                     f"of {llm['window']['cap']} ({llm['window']['cuts']} cuts)"),
        ]
        batching = llm.get("batching") or {}
        if batching.get("batches"):
            rows.append(("batches (items mean / max, prompt tokens saved)",
                         f"{batching['batches']} ({batching['items_per_batch_mean']} / "
                         f"{batching['items_per_batch_max']}, {batching['tokens_saved']:,})"))
        if llm.get("fallbacks"):
            rows.append(("answered offline after LLM failures", str(llm["fallbacks"])))
    work = summary.get("work")
    return ["## Run", "", "| figure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
            *([_work_line(work), ""] if work else [])]


def _work_line(work: dict[str, Any]) -> str:
    """run.json's `work` block in one sentence: requests and prompt tokens per page, against the page text."""
    pages, text, ratio = work["pages"], work.get("text_tokens_per_page"), work.get("prompt_per_text")
    if work.get("note") and not work["requests"]:
        read = f"; it read {pages} pages, {text:,} tokens of text each on average" if pages else ""
        return f"Work: {work['note']}{read}."
    if not pages:
        return (f"Work: no page was analysed this run; {work['requests']:,} LLM requests, "
                f"{work['prompt_tokens']:,} prompt tokens.")
    return (f"Work: {round(work['requests_per_page'], 1):g} requests and {work['prompt_tokens_per_page']:,} prompt "
            f"tokens per page, for {text:,} tokens of page text" + (f" ({ratio:.2f}×)." if ratio is not None else "."))


def _topic_section(topic: str, members: list[DocResult], synthesis: Any) -> list[str]:
    lines = [f"### {one_line(topic)}", ""]
    if isinstance(synthesis, dict):
        lines += [one_line(synthesis.get("overview", ""), 2000), ""]
        if synthesis.get("key_themes"):
            lines += ["Key themes: " + ", ".join(one_line(theme, 80) for theme in synthesis["key_themes"]), ""]
    elif isinstance(synthesis, str):
        lines += [f"_{one_line(synthesis)}_", ""]
    for result in members:
        lines += _page_highlights(result)
    return lines


def _page_highlights(result: DocResult) -> list[str]:
    name = result.title or result.url
    if result.status is DocStatus.FAILED or not result.analysis:
        return [f"- **[{one_line(name)}]({link_target(result.url)})** — failed: {one_line(result.error or '')}", ""]
    analysis = result.analysis
    concepts = sorted(analysis["key_concepts"], key=lambda c: -c["importance"])[:3]
    summary = one_line(analysis["summary"])  # empty when --tasks left the summary out: no dangling dash
    lines = [f"- **[{one_line(name)}]({link_target(result.url)})**" + (f" — {summary}" if summary else "")]
    if result.fallback_tasks:
        lines.append("  - _Answered by the offline extractive analyser (LLM unavailable): "
                     + ", ".join(result.fallback_tasks) + "_")
    if result.fields:
        lines.append("  - Fields: " + "; ".join(f"{one_line(name)} = {one_line(str(value), 80) if value is not None else '—'}"
                                                for name, value in result.fields.items()))
    if concepts:
        lines.append("  - Concepts: " + ", ".join(f"{one_line(c['name'], 80)} ({c['importance']})" for c in concepts))
    details = _titles(item["title"] for item in analysis["implementation_details"])
    if details:
        lines.append("  - Advice: " + details)
    patterns = _titles(item["name"] for item in analysis["code_patterns"])
    if patterns:
        lines.append("  - Code: " + patterns)
    return lines + [""]


def _titles(names: Iterable[str], most: int = 3) -> str:
    return "; ".join(one_line(n) for n in list(names)[:most])


_MARKUP = re.compile(r"([\\`*_\[\]()<>#!|~{}])")


def one_line(text: str, width: int = 300) -> str:
    """One line of page-derived text, cut to `width`, as plain text in Markdown: every character that could
    start markup (a link, an image, HTML, emphasis, a heading, a table cell) is backslash-escaped, and
    escape sequences and control characters are dropped (redact.printable), so a page cannot put markup in
    the report."""
    flat = " ".join(printable(str(text)).split())
    flat = flat if len(flat) <= width else flat[: width - 1] + "…"
    return _MARKUP.sub(r"\\\1", flat)


def link_target(url: str) -> str:
    """`url` as a Markdown link destination: only http(s) and file URLs, in angle brackets, with the
    characters that could end it percent-encoded; anything else is not linked at all."""
    if urlparse(url).scheme not in ("http", "https", "file"):
        return "<#not-a-web-address>"
    return "<" + quote(printable(url), safe=":/?#[]@!$&'*+,;=%~-._") + ">"
