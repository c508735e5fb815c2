"""report.html: the report as one self-contained page, with a sidebar to move around it and charts drawn as
inline SVG. Nothing in it is fetched from anywhere, and no page or LLM text reaches it unescaped."""

from __future__ import annotations

import math
from html import escape

from .report_model import (FALLBACK_NOTE, NO_OVERVIEW, REUSED_NOTE, STAGE_NAMES, ItemList, PageEntry, Related,
                           Report, Timing, TopicEntry, counted, plain, web_address)

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
dt{color:var(--muted)}dd{margin:0}ul.items{margin:0;padding-left:1.1rem}.note{font-style:italic;color:var(--muted)}
.warn{border-left:4px solid #c0392b;padding:.3rem .8rem;background:var(--side)}
table{border-collapse:collapse;font-size:14px}td,th{border-bottom:1px solid var(--line);padding:.25rem .6rem;
text-align:left;vertical-align:top}figure{margin:1.2rem 0}figcaption{font-weight:600;margin-bottom:.3rem}
svg{max-width:100%;height:auto;font:12px system-ui,sans-serif}svg text{fill:var(--ink)}
svg .wall{stroke:var(--ink)}svg .topic-dot{stroke:var(--bg);stroke-width:2}
svg a:hover circle{stroke:var(--ink);stroke-width:2}svg path.tie:hover{stroke-opacity:.9}
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
    """The page's title linked to the page itself when report_model.web_address lets its address be a link (an
    http, https or file URL), else the title alone."""
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
            f'<figure id="chart-map"><figcaption>How topics relate</figcaption>{_map(report)}'
            '<p class="muted">Each dot is a topic, larger for more pages; a line joins two topics when pages of one '
            "name the other or its pages as related, thicker for more such links. Hover for names and counts, click "
            "to go there.</p></figure></section>")


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
    rows = [(item_list.label, _items(item_list)) for item_list in page.lists]
    notes = ([f'<p class="note">{REUSED_NOTE}</p>'] if page.reused else []) + \
        ([f'<p class="note">{FALLBACK_NOTE}: {escape(", ".join(page.fallback_tasks))}</p>'] if page.fallback_tasks
         else [])
    summary = f" — {escape(page.summary)}" if page.summary else ""
    table = f'<dl>{"".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)}</dl>' if rows else ""
    return f"{head}{summary}{''.join(notes)}{table}</li>"


def _items(item_list: ItemList) -> str:
    """A page's list: items one a line (a list) or on one line between the model's separators."""
    items = [escape(item) if isinstance(item, str) else _related(item) for item in item_list.items]
    if item_list.separator is None:
        return f'<ul class="items">{"".join(f"<li>{item}</li>" for item in items)}</ul>'
    return item_list.separator.join(items)


def _related(item: Related) -> str:
    if item.anchor is None:
        return escape(item.name)
    return _link(escape(item.name), item.anchor, f' title="{escape(item.relationship)}"')


def _failures(report: Report) -> str:
    items = "".join(f"<li>{_page_link(page)}: {escape(page.error or '')}</li>" for page in report.failures)
    return (f'<section id="failures"><h2>Failures</h2>{f"<ul>{items}</ul>" if items else ""}'
            f"<p>{escape(report.failures_note)}</p></section>")


def _run(report: Report) -> str:
    rows = "".join(f"<tr><th>{escape(f.label)}</th><td>{escape(f.value)}</td></tr>" for f in report.figures)
    notes = "".join(f"<p>{escape(note)}</p>" for note in (*report.notes, report.work) if note)
    return (f'<section id="run"><h2>Run</h2><figure id="chart-time"><figcaption>Where the time went</figcaption>'
            f"{_time_chart(report.timing)}</figure><table>{rows}</table>{notes}</section>")


def _colours(report: Report) -> dict[str, str]:
    """Each topic's colour by its anchor, the same in every chart."""
    return {topic.anchor: _colour(i) for i, topic in enumerate(report.topics)}


def _colour(index: int) -> str:
    """A topic's colour: hues a golden angle apart, so neighbours differ."""
    return f"hsl({index * 137.508 % 360:.0f}, 55%, 48%)"


def _svg(width: float, height: float, body: str, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
            f'role="img" aria-label="{escape(label)}">{body}</svg>')


_BAR_ROWS = 40  # topics the bar chart shows at most (the largest)
_CHAR_W = 6.6  # px a character of the charts' 12 px font takes, at most on average: to size a label's room
_CHART_W = 900  # px: the charts fit the main column unscaled, so their 12 px text stays 12 px


def _fit(text: str, room: float) -> str:
    """`text` cut (at a word's end, with "…") to what fits `room` px of a chart's 12 px text."""
    return plain(text, max(round(room / _CHAR_W), 4))


def _topic_bars(report: Report) -> str:
    """Two bar panels side by side, one row per topic (largest first): its pages, and its text in tokens. The
    label column is as wide as the longest name needs, up to a bound past which names are cut."""
    colours = _colours(report)
    topics = sorted(report.topics, key=lambda t: (-len(t.pages), -t.text_tokens))[:_BAR_ROWS]
    most_pages = max((len(t.pages) for t in topics), default=0) or 1
    most_tokens = max((t.text_tokens for t in topics), default=0) or 1
    label_w = min(max((len(t.name) for t in topics), default=0) * _CHAR_W + 14, 340.0)
    gap, row = 70, 22
    bar_w = (_CHART_W - label_w) / 2 - gap
    body = [f'<text x="{label_w:.0f}" y="14" font-weight="600">pages</text>',
            f'<text x="{label_w + bar_w + gap:.0f}" y="14" font-weight="600">text tokens</text>']
    for i, topic in enumerate(topics):
        y, colour, name = 24 + i * row, colours[topic.anchor], escape(topic.name)
        body.append(_link(f'<text x="{label_w - 8:.0f}" y="{y + 13}" text-anchor="end">'
                          f"{escape(_fit(topic.name, label_w - 14))}<title>{name}</title></text>", topic.anchor))
        for x, value, most, unit in ((label_w, len(topic.pages), most_pages, "page"),
                                     (label_w + bar_w + gap, topic.text_tokens, most_tokens, "token")):
            width = bar_w * value / most
            body.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{width:.1f}" height="14" fill="{colour}">'
                        f"<title>{name}: {counted(value, unit)}</title></rect>"
                        f'<text x="{x + width + 4:.1f}" y="{y + 14}">{value:,}</text>')
    more = len(report.topics) - len(topics)
    height = 30 + len(topics) * row + (18 if more else 0)
    if more:
        body.append(f'<text x="0" y="{height - 6}">and {counted(more, "smaller topic")}, not shown</text>')
    return _svg(_CHART_W, height, "".join(body), "Pages and text tokens per topic")


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


_MAP_TOPICS = 80  # topics the map shows at most (the largest): each needs ~15 px of the circle for its label
_MAP_LABEL = 30  # characters of a topic's name on the map
_BOLD_W = 7.4  # px a character of the map's bold labels takes, at most on average
_MAP_TIES = 2  # lines per topic on the map at most (the heaviest): more are a hairball
_FLAT = 8  # up to this many topics, labels lie flat; more, and each points outwards from the circle


def _map(report: Report) -> str:
    """Topics as dots on a circle, sized by their pages and each labelled; one line per pair of topics whose
    pages name each other as related, as thick as the links between them are many (the heaviest few per topic).
    It is at most ~900 px wide, so it is shown unscaled and its labels keep their 12 px."""
    if not report.topics:
        return "<p>No pages.</p>"
    colours = _colours(report)
    largest = {t.anchor for t in sorted(report.topics, key=lambda t: -len(t.pages))[:_MAP_TOPICS]}
    topics = [topic for topic in report.topics if topic.anchor in largest]  # in the report's order
    ties, inside = _ties(report)
    n, room = len(topics), _MAP_LABEL * _BOLD_W + 24
    radius = max(190.0, n * 15 / (2 * math.pi))
    centre_x, centre_y = radius + room, radius + (40 if n <= _FLAT else room)  # flat labels need no room above
    most = max(len(t.pages) for t in topics) or 1
    biggest = min(14.0, max(3.0, math.pi * radius / n - 1))  # neighbours' dots never touch
    where: dict[str, tuple[float, float]] = {}
    nodes = []
    for i, topic in enumerate(topics):
        angle = 2 * math.pi * i / n - math.pi / 2
        x, y = centre_x + radius * math.cos(angle), centre_y + radius * math.sin(angle)
        where[topic.anchor] = (x, y)
        dot = 3 + (biggest - 3) * math.sqrt(len(topic.pages) / most)
        within = f"; {counted(inside[topic.anchor], 'link')} between its pages" if inside[topic.anchor] else ""
        nodes.append(_link(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{dot:.1f}" fill="{colours[topic.anchor]}" '
                           f'class="topic-dot"><title>{escape(topic.name)}: {topic.pages_note}{within}</title>'
                           f"</circle>{_label(topic.name, x, y, angle, biggest + 5, n)}", topic.anchor))
    shown = sorted(((key, weight) for key, weight in ties.items() if key[0] in where and key[1] in where),
                   key=lambda tie: -tie[1])
    heaviest = shown[0][1] if shown else 1
    edges = [_edge(where[a], where[b], (centre_x, centre_y), weight / heaviest, colours[a],
                   f"{escape(names[0])} ↔ {escape(names[1])}: {counted(weight, 'link')} between their pages")
             for (a, b, *names), weight in reversed(shown[:_MAP_TIES * n])]  # the heaviest drawn last, on top
    more = len(report.topics) - n
    fewer = len(shown) - len(edges)
    notes = ([f"and {counted(more, 'smaller topic')}, not shown"] if more else []) + \
        ([f"and {counted(fewer, 'weaker tie')} between topics, not drawn"] if fewer else []) + \
        ([] if edges else ["No page names a page or topic of another topic as related."])
    nodes += [f'<text x="8" y="{2 * centre_y + 18 * k + 6:.0f}">{note}</text>' for k, note in enumerate(notes)]
    return _svg(2 * centre_x, 2 * centre_y + 18 * len(notes), f'<g fill="none">{"".join(edges)}</g>{"".join(nodes)}',
                "How topics relate")


def _ties(report: Report) -> tuple[dict[tuple[str, str, str, str], int], dict[str, int]]:
    """Links between topics: for each pair (their anchors and names, in report order) how many times a page of
    one names the other or one of its pages as related; and for each topic, how many links stay inside it."""
    home = {topic.anchor: (i, topic) for i, topic in enumerate(report.topics)}
    home.update({page.anchor: home[topic.anchor] for topic in report.topics for page in topic.pages})
    ties: dict[tuple[str, str, str, str], int] = {}
    inside = {topic.anchor: 0 for topic in report.topics}
    for i, topic in enumerate(report.topics):
        for item in (item for page in topic.pages for item in page.related if item.anchor in home):
            j, other = home[item.anchor]
            if other is topic:
                inside[topic.anchor] += 1
                continue
            first, second = (topic, other) if i < j else (other, topic)
            key = (first.anchor, second.anchor, first.name, second.name)
            ties[key] = ties.get(key, 0) + 1
    return ties, inside


def _label(name: str, x: float, y: float, angle: float, gap: float, count: int) -> str:
    """A topic's name beside its dot, outside the circle: flat when there are few topics, else along the
    radius (turned on the left half so it never reads upside down)."""
    cos, sin = math.cos(angle), math.sin(angle)
    lx, ly, text = x + gap * cos, y + gap * sin, escape(plain(name, _MAP_LABEL))
    if count <= _FLAT:
        side = "middle" if abs(cos) < 0.3 else "start" if cos > 0 else "end"
        lift = 4 if side != "middle" else (-4 if sin < 0 else 12)
        return f'<text x="{lx:.1f}" y="{ly + lift:.1f}" text-anchor="{side}" font-weight="600">{text}</text>'
    turn = math.degrees(angle) + (180 if cos < 0 else 0)
    return (f'<text x="{lx:.1f}" y="{ly:.1f}" dy="4" text-anchor="{"end" if cos < 0 else "start"}" '
            f'transform="rotate({turn:.1f} {lx:.1f} {ly:.1f})" font-weight="600">{text}</text>')


def _edge(start: tuple[float, float], end: tuple[float, float], middle: tuple[float, float], share: float,
          colour: str, title: str) -> str:
    """A line between two topics, bowed towards the circle's middle so lines between neighbours stay apart; as
    thick and as opaque as its `share` of the heaviest tie's links."""
    control = (middle[0] + 0.2 * ((start[0] + end[0]) / 2 - middle[0]),
               middle[1] + 0.2 * ((start[1] + end[1]) / 2 - middle[1]))
    return (f'<path class="tie" d="M{start[0]:.1f} {start[1]:.1f} Q{control[0]:.1f} {control[1]:.1f} {end[0]:.1f} '
            f'{end[1]:.1f}" stroke="{colour}" stroke-width="{0.8 + 5.2 * math.sqrt(share):.1f}" '
            f'stroke-opacity="{0.25 + 0.45 * share:.2f}"><title>{title}</title>'
            "</path>")
