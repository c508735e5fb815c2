"""report.html: the report as one self-contained page, with a sidebar to move around it and charts drawn as
inline SVG. Nothing in it is fetched from anywhere, and no page or LLM text reaches it unescaped."""

from __future__ import annotations

import math
from html import escape

from .report_model import (FALLBACK_NOTE, NO_OVERVIEW, REUSED_NOTE, STAGE_NAMES, PageEntry, Report, Timing,
                           TopicEntry, counted, web_address)

__all__ = ["render_html"]

# defence in depth: were anything to slip past the escaping, the browser still runs no script and fetches nothing
_POLICY = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
_STYLE = """
:root{--ink:#1d2330;--muted:#5b6472;--line:#d9dde3;--bg:#fff;--side:#f5f6f8;--accent:#2f5fb3}
@media (prefers-color-scheme:dark){:root{--ink:#e3e6ea;--muted:#9aa3ae;--line:#39404a;--bg:#16191d;--side:#1e2227;
--accent:#8fb3f0}}
*{box-sizing:border-box}body{margin:0;font:15px/1.55 system-ui,sans-serif;color:var(--ink);background:var(--bg)}
.layout{display:grid;grid-template-columns:17rem 1fr}
nav.side{position:sticky;top:0;height:100vh;overflow:auto;padding:1rem;background:var(--side);
border-right:1px solid var(--line);font-size:14px}
nav.side ol{list-style:none;margin:0;padding-left:0}nav.side ol ol{padding-left:.9rem}
nav.side a{display:flex;justify-content:space-between;gap:.5rem;padding:.15rem .3rem;border-radius:4px;
color:inherit;text-decoration:none}nav.side a:hover{background:var(--line)}
.n{color:var(--muted);font-variant-numeric:tabular-nums}
main{max-width:62rem;padding:1rem 2rem 4rem}a{color:var(--accent)}
h1{font-size:1.7rem;margin:.4rem 0}h2{border-bottom:1px solid var(--line);padding-bottom:.2rem;margin-top:2.2rem}
h3 small,.muted{color:var(--muted);font-weight:normal}
section.topic{border-top:1px solid var(--line);margin-top:1.6rem}
ul.pages{list-style:none;padding:0}ul.pages>li{margin:.9rem 0;padding-left:.8rem;border-left:3px solid var(--line)}
li.reused{border-left-style:dashed}li.failed{border-left-color:#c0392b}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1rem .8rem;margin:.3rem 0;font-size:14px}
dt{color:var(--muted)}dd{margin:0}.note{font-style:italic;color:var(--muted)}
.warn{border-left:4px solid #c0392b;padding:.3rem .8rem;background:var(--side)}
table{border-collapse:collapse;font-size:14px}td,th{border-bottom:1px solid var(--line);padding:.25rem .6rem;
text-align:left;vertical-align:top}figure{margin:1.2rem 0}figcaption{font-weight:600;margin-bottom:.3rem}
svg{max-width:100%;height:auto;font:12px system-ui,sans-serif}svg text{fill:var(--ink)}
svg .wall{stroke:var(--ink)}svg .topic-dot{stroke:var(--bg);stroke-width:2}
svg a:hover circle{stroke:var(--ink);stroke-width:2}
@media (max-width:50rem){.layout{display:block}nav.side{position:static;height:auto}}
"""


def render_html(report: Report) -> str:
    """The whole page: the same sections as report.md, in the same order, plus charts."""
    title = f"{escape(report.title)} — analysis"
    main = "".join((_overview(report), _glance(report), _topics(report), _failures(report), _run(report)))
    warn = f'<p class="warn">{escape(report.unfinished_note)}</p>' if report.unfinished else ""
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
            '<meta name="referrer" content="no-referrer">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><style>{_STYLE}</style></head>\n"
            f'<body><div class="layout">{_sidebar(report)}<main id="top"><h1>{title}</h1>'
            f"<p>{escape(report.intro)}</p>{warn}{main}</main></div></body></html>\n")


def _link(name: str, anchor: str, extra: str = "") -> str:
    """A link inside the report; anchors are the model's own slugs, escaped all the same."""
    return f'<a href="#{escape(anchor)}"{extra}>{name}</a>'


def _page_link(page: PageEntry) -> str:
    """The page's title linked to the page itself when its address may be a link (report.link_target's rules)."""
    address = web_address(page.url)
    if address is None:
        return f"<strong>{escape(page.title)}</strong>"
    return f'<a href="{escape(address)}" rel="noopener noreferrer"><strong>{escape(page.title)}</strong></a>'


def _sidebar(report: Report) -> str:
    topics = "".join(_entry(topic.name, topic.anchor, len(topic.pages)) for topic in report.topics)
    return ('<nav class="side" aria-label="Contents"><ol>' + _entry("What the site is", "overview")
            + _entry("At a glance", "glance") + _entry("Topics", "topics", len(report.topics), f"<ol>{topics}</ol>")
            + _entry("Failures", "failures", len(report.failures)) + _entry("Run", "run") + "</ol></nav>")


def _entry(label: str, anchor: str, count: int | None = None, inside: str = "") -> str:
    """One line of the sidebar: a section or a topic, how many it holds, and the lines under it."""
    number = "" if count is None else f"<span class=n>{count}</span>"
    return f"<li>{_link(f'<span>{escape(label)}</span>{number}', anchor)}{inside}</li>"


def _overview(report: Report) -> str:
    opening, lead = report.overview.opening, report.overview.lead
    parts = []
    if opening is not None:
        parts.append(f"<p>From its opening page, {_link(escape(opening.title), opening.anchor)}: "
                     f"{escape(opening.summary)}</p>")
    if lead is not None:
        parts.append(f"<p>From the synthesis of the topic {_link(escape(lead.name), lead.anchor)}: "
                     f"{escape(lead.overview)}</p>")
    return f'<section id="overview"><h2>What the site is</h2>{"".join(parts) or f"<p>{NO_OVERVIEW}</p>"}</section>'


def _glance(report: Report) -> str:
    return ('<section id="glance"><h2>At a glance</h2>'
            f'<figure id="chart-topics"><figcaption>Pages and tokens per topic</figcaption>{_topic_bars(report)}'
            "</figure>"
            f'<figure id="chart-map"><figcaption>How topics and pages relate</figcaption>{_map(report)}'
            '<p class="muted">Large dots are topics, small ones their pages (hollow: failed); a line joins a page '
            "to a topic or page it names as related. Hover for names, click to go there.</p></figure></section>")


def _topics(report: Report) -> str:
    return f'<section id="topics"><h2>Topics</h2>{"".join(map(_topic, report.topics))}</section>'


def _topic(topic: TopicEntry) -> str:
    parts = [f'<section class="topic" id="{escape(topic.anchor)}"><h3>{escape(topic.name)} '
             f"<small>{topic.pages_note}</small></h3>"]
    if topic.overview:
        parts.append(f"<p>{escape(topic.overview)}</p>")
    if topic.themes:
        parts.append(f"<p><span class=muted>Key themes:</span> {', '.join(map(escape, topic.themes))}</p>")
    if topic.synthesis_error:
        parts.append(f'<p class="note">{escape(topic.synthesis_error)}</p>')
    parts.append(f'<ul class="pages">{"".join(map(_page, topic.pages))}</ul></section>')
    return "".join(parts)


def _page(page: PageEntry) -> str:
    classes = " ".join(name for name, on in (("failed", page.failed), ("reused", page.reused)) if on)
    head = f'<li id="{escape(page.anchor)}"' + (f' class="{classes}"' if classes else "") + f">{_page_link(page)}"
    if page.failed:
        return f"{head} — failed: {escape(page.error or '')}</li>"
    rows = [(label, "; ".join(items) if label in ("Advice", "Code") else ", ".join(items)) for label, items in (
        ("Fields", [f"{escape(n)} = {'—' if v is None else escape(v)}" for n, v in page.fields]),
        ("Concepts", [f"{escape(name)} ({importance})" for name, importance in page.concepts]),
        ("Advice", [escape(item) for item in page.advice]),
        ("Code", [escape(item) for item in page.code]),
        ("Related", [_link(escape(r.name), r.anchor, f' title="{escape(r.relationship)}"') if r.anchor
                     else escape(r.name) for r in page.related])) if items]
    notes = ([f'<p class="note">{REUSED_NOTE}</p>'] if page.reused else []) + \
        ([f'<p class="note">{FALLBACK_NOTE}: {escape(", ".join(page.fallback_tasks))}</p>'] if page.fallback_tasks
         else [])
    summary = f" — {escape(page.summary)}" if page.summary else ""
    table = f'<dl>{"".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)}</dl>' if rows else ""
    return f"{head}{summary}{''.join(notes)}{table}</li>"


def _failures(report: Report) -> str:
    items = "".join(f"<li>{_page_link(page)}: {escape(page.error or '')}</li>" for page in report.failures)
    return (f'<section id="failures"><h2>Failures</h2>{f"<ul>{items}</ul>" if items else ""}'
            f"<p>{escape(report.failures_note)}</p></section>")


def _run(report: Report) -> str:
    rows = "".join(f"<tr><th>{escape(f.label)}</th><td>{escape(f.value)}</td></tr>" for f in report.figures)
    notes = "".join(f"<p>{escape(note)}</p>" for note in (*report.notes, report.work) if note)
    return (f'<section id="run"><h2>Run</h2><figure id="chart-time"><figcaption>Where the time went</figcaption>'
            f"{_time_chart(report.timing)}</figure><table>{rows}</table>{notes}</section>")


def _colour(index: int) -> str:
    """A topic's colour: hues a golden angle apart, so neighbours differ."""
    return f"hsl({index * 137.508 % 360:.0f}, 55%, 48%)"


def _svg(width: float, height: float, body: str, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
            f'role="img" aria-label="{escape(label)}">{body}</svg>')


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


_BAR_ROWS = 40  # topics the bar chart shows at most (the largest)


def _topic_bars(report: Report) -> str:
    """Two bar panels side by side, one row per topic (largest first): its pages, and its text in tokens."""
    colours = {topic.anchor: _colour(i) for i, topic in enumerate(report.topics)}
    topics = sorted(report.topics, key=lambda t: (-len(t.pages), -t.text_tokens))[:_BAR_ROWS]
    most_pages = max((len(t.pages) for t in topics), default=0) or 1
    most_tokens = max((t.text_tokens for t in topics), default=0) or 1
    label_w, bar_w, gap, row = 190, 250, 80, 22
    body = [f'<text x="{label_w}" y="14" font-weight="600">pages</text>',
            f'<text x="{label_w + bar_w + gap}" y="14" font-weight="600">text tokens</text>']
    for i, topic in enumerate(topics):
        y, colour, name = 24 + i * row, colours[topic.anchor], escape(topic.name)
        body.append(_link(f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end">{escape(_cut(topic.name, 28))}'
                          f"<title>{name}</title></text>", topic.anchor))
        for x, value, most, unit in ((label_w, len(topic.pages), most_pages, "page"),
                                     (label_w + bar_w + gap, topic.text_tokens, most_tokens, "token")):
            width = bar_w * value / most
            body.append(f'<rect x="{x}" y="{y + 3}" width="{width:.1f}" height="14" fill="{colour}">'
                        f"<title>{name}: {counted(value, unit)}</title></rect>"
                        f'<text x="{x + width + 4:.1f}" y="{y + 14}">{value:,}</text>')
    more = len(report.topics) - len(topics)
    height = 30 + len(topics) * row + (18 if more else 0)
    if more:
        body.append(f'<text x="0" y="{height - 6}">and {counted(more, "smaller topic")}, not shown</text>')
    return _svg(label_w + 2 * (bar_w + gap), height, "".join(body), "Pages and text tokens per topic")


def _time_chart(timing: Timing) -> str:
    """Stage times summed over pages, and LLM time summed over requests, as bars against the wall time (the
    dashed line): a bar past the line is work that ran side by side."""
    rows = [("wall time, start to finish", timing.wall)]
    rows += [(f"{STAGE_NAMES[name]}, summed over pages", seconds) for name, seconds in timing.stages.items()]
    if timing.llm:
        rows += [("LLM: waiting for a slot, summed", timing.slot_wait), ("LLM: on the wire, summed", timing.on_wire)]
    most = max(seconds for _, seconds in rows) or 1.0
    label_w, bar_w, row = 230, 420, 26
    scale = bar_w / most
    body = []
    for i, (label, seconds) in enumerate(rows):
        y = 8 + i * row
        times = f" ({seconds / timing.wall:.1f}× the wall time)" if i and timing.wall and seconds > timing.wall else ""
        body.append(f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end">{label}</text>'
                    f'<rect x="{label_w}" y="{y + 2}" width="{seconds * scale:.1f}" height="15" '
                    f'fill="{"#7f8c99" if i == 0 else _colour(i)}"><title>{label}: {seconds:.2f} s</title></rect>'
                    f'<text x="{label_w + seconds * scale + 4:.1f}" y="{y + 14}">{seconds:.2f} s{times}</text>')
    height = 16 + len(rows) * row
    wall_x = label_w + timing.wall * scale
    body.append(f'<line class="wall" stroke="#888" stroke-dasharray="4 3" x1="{wall_x:.1f}" y1="4" '
                f'x2="{wall_x:.1f}" y2="{height - 4}"/>')
    return _svg(label_w + bar_w + 200, height, "".join(body), "Where the time went")


_RING = 24  # topics that fit on one circle; more go on a spiral


def _map(report: Report) -> str:
    """Topics as large dots, each with its pages in a small sunflower around it; lines from each page to the
    topics and pages its related topics name. Topics sit on a circle, or on a spiral when there are many."""
    topics = report.topics
    if not topics:
        return "<p>No pages.</p>"
    radii = [18 + 7 * math.sqrt(max(len(t.pages) - 1, 0)) for t in topics]
    centres = _ring(radii) if len(topics) <= _RING else _spiral(radii)
    low_x = min(x - r for (x, _, _), r in zip(centres, radii)) - 200
    low_y = min(y - r for (_, y, _), r in zip(centres, radii)) - 40
    high_x = max(x + r for (x, _, _), r in zip(centres, radii)) + 200
    high_y = max(y + r for (_, y, _), r in zip(centres, radii)) + 40
    where: dict[str, tuple[float, float]] = {}
    home: dict[str, str] = {}  # anchor -> its topic's anchor
    most = _RING if len(topics) <= _RING else _RING // 2  # on a spiral labels crowd: name only the largest
    nodes, labelled = [], {t.anchor for t in sorted(topics, key=lambda t: -len(t.pages))[:most]}
    for i, (topic, (x, y, angle), radius) in enumerate(zip(topics, centres, radii)):
        x, y, colour = x - low_x, y - low_y, _colour(i)
        where[topic.anchor], home[topic.anchor] = (x, y), topic.anchor
        for k, page in enumerate(topic.pages):  # golden-angle sunflower: any number of pages, evenly packed
            reach = 14 + 7 * math.sqrt(k)
            where[page.anchor] = (x + reach * math.cos(k * 2.39996), y + reach * math.sin(k * 2.39996))
            home[page.anchor] = topic.anchor
            nodes.append(_link(f'<circle cx="{where[page.anchor][0]:.1f}" cy="{where[page.anchor][1]:.1f}" r="4" '
                               f'fill="{"none" if page.failed else colour}" stroke="{colour}">'
                               f"<title>{escape(page.title)}</title></circle>", page.anchor))
        label = ""
        if topic.anchor in labelled:
            lx, ly = x + (radius + 6) * math.cos(angle), y + (radius + 6) * math.sin(angle)
            anchor = "start" if math.cos(angle) >= -0.01 else "end"
            label = (f'<text x="{lx:.1f}" y="{ly + 4:.1f}" text-anchor="{anchor}" font-weight="600">'
                     f"{escape(_cut(topic.name, 26))}</text>")
        nodes.append(_link(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="{colour}" class="topic-dot">'
                           f"<title>{escape(topic.name)}: {topic.pages_note}</title></circle>{label}", topic.anchor))
    middle = ((high_x - low_x) / 2, (high_y - low_y) / 2)
    edges = [_edge(where[page.anchor], where[item.anchor], f"{escape(page.title)} → {escape(item.name)}",
                   _colour(i), middle if home[item.anchor] != topic.anchor else None)
             for i, topic in enumerate(topics) for page in topic.pages for item in page.related if item.anchor in where]
    if not edges:
        nodes.append(f'<text x="8" y="{high_y - low_y - 8:.0f}">No page names another page or topic of this run as '
                     "related.</text>")
    return _svg(high_x - low_x, high_y - low_y, f'<g fill="none">{"".join(edges)}</g>{"".join(nodes)}',
                "How topics and pages relate")


def _edge(start: tuple[float, float], end: tuple[float, float], title: str, colour: str,
          bow: tuple[float, float] | None) -> str:
    """A line from a page to what it names; one to another topic bows towards `bow` (the middle), so lines
    across the map stay apart."""
    mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    control = mid if bow is None else ((mid[0] + bow[0]) / 2, (mid[1] + bow[1]) / 2)
    return (f'<path d="M{start[0]:.1f} {start[1]:.1f} Q{control[0]:.1f} {control[1]:.1f} {end[0]:.1f} {end[1]:.1f}" '
            f'stroke="{colour}" stroke-opacity=".35"><title>{title}</title></path>')


def _ring(radii: list[float]) -> list[tuple[float, float, float]]:
    """Topic centres on one circle, each given an arc as wide as its cluster; the angle points outwards."""
    if len(radii) == 1:
        return [(0.0, 0.0, 0.0)]
    widths = [2 * r + 70 for r in radii]
    ring = max(sum(widths) / (2 * math.pi), 120.0)
    centres, angle = [], -math.pi / 2
    for width in widths:
        middle = angle + math.pi * width / sum(widths)
        centres.append((ring * math.cos(middle), ring * math.sin(middle), middle))
        angle += 2 * math.pi * width / sum(widths)
    return centres


def _spiral(radii: list[float]) -> list[tuple[float, float, float]]:
    """Topic centres on a golden-angle spiral, spaced for the largest cluster: room grows with the count, not
    with its square as on a circle."""
    step = 2 * max(radii) + 24
    return [(step * 0.75 * math.sqrt(k + 0.5) * math.cos(k * 2.39996),
             step * 0.75 * math.sqrt(k + 0.5) * math.sin(k * 2.39996), k * 2.39996) for k in range(len(radii))]
