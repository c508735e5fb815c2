"""Text from pages is plain text in report.md and changes.md: no HTML, no scripts, no links of a page's
making, no headings or table cells. Each test fails when the escaping is removed."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

from document_it.models import DocResult, DocStatus
from document_it.report import link_target, one_line, render_report

HOSTILE = ("<script>alert(1)</script> <img src=x onerror=alert(1)> [Download the fix](https://evil.test/x) "
           "![t](https://evil.test/pixel.png) **IMPORTANT** | cell | \n# Heading \u202eevil\x1b[31m")


def _summary() -> dict:
    return {"documents": {"total": 1, "completed": 1, "failed": 0, "not_reached": 0}, "provider_label": "x",
            "model": "m", "mode": "hybrid", "wall_seconds": 1.0, "llm": {"prompts": 5},
            "stages": {"fetch": 0.1, "parse": 0.1, "analyze": 0.1}}


def _report(url: str = "https://docs.test/page") -> str:
    analysis = {"summary": HOSTILE, "key_concepts": [{"name": HOSTILE, "importance": 9}],
                "implementation_details": [{"title": HOSTILE}], "code_patterns": [{"name": HOSTILE}],
                "related_topics": []}
    result = DocResult(url=url, title=HOSTILE, topic=HOSTILE, status=DocStatus.COMPLETED, provider="x", model="m",
                       analysis=analysis)
    synthesis = {HOSTILE: {"overview": HOSTILE, "key_themes": [HOSTILE]}}
    return render_report([result], synthesis, _summary(), HOSTILE)


def _unescaped(text: str, token: str) -> bool:
    """True when `token` appears in `text` without a backslash before its first character."""
    return re.search(r"(?<!\\)" + re.escape(token), text) is not None


def test_page_text_cannot_put_html_links_images_or_headings_in_the_report():
    report = _report()
    for token in ("<script", "<img", "](https://evil.test", "![", "**IMPORTANT"):
        assert not _unescaped(report, token), token
    # "|" is no longer escaped (it was noise in "float | None"): page text never goes into a table, and each line
    # of it is followed by a line of the report's own, so no delimiter row can make it one. Rendered as GitHub
    # would, the page's text is in no table cell, and it made no element, link or image:
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(report)
    assert "cell" not in "".join(re.findall(r"<t[dh]>.*?</t[dh]>", html, re.S))
    assert not re.search(r"<(script|img)\b|<strong>IMPORTANT|<h1>Heading", html)
    assert "evil.test" not in " ".join(re.findall(r'(?:href|src)="[^"]*"', html))
    assert "\n# Heading" not in report and "\u202e" not in report and "\x1b" not in report
    # what the page said is still there to read
    assert "alert" in report and "Download the fix" in report


def test_only_web_addresses_become_link_targets():
    assert link_target("javascript:alert(1)") == "<#not-a-web-address>"
    assert link_target("https://docs.test/a b)(<x>") == "<https://docs.test/a%20b%29%28%3Cx%3E>"
    report = _report(url="javascript:alert(1)")
    assert "javascript:" not in report.split("## Topics", 1)[1].split("— ", 1)[0]


def test_one_line_is_one_line_of_plain_text():
    assert one_line("a\nb\r\n\tc") == "a b c"
    assert one_line("x" * 400, 10) == "x" * 9 + "…"
