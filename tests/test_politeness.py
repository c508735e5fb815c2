"""robots.txt honoured per host over real loopback HTTP, and the per-host download gate."""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
from pathlib import Path

import pytest
import requests
from _clock import FakeClock

from document_it.politeness import HostGate, Robots
from document_it.testing.site import SiteServer

AGENT = "document-it/0.1.0"


def http_text(url: str) -> tuple[int | None, str]:
    """A real fetch_text: (status, body), or (None, "") when nothing answers."""
    try:
        resp = requests.get(url, timeout=5)
    except requests.ConnectionError:
        return None, ""
    return resp.status_code, resp.text


def robots_for(site: SiteServer, tmp_path: Path, text: str | None) -> Robots:
    if text is not None:
        (tmp_path / "robots.txt").write_text(text)
    return Robots(http_text, AGENT)


# --- Robots: rules ----------------------------------------------------------------------------

def test_own_group_rules_and_allow_override(site: SiteServer, tmp_path: Path) -> None:
    robots = robots_for(site, tmp_path, (
        "User-agent: *\n"
        "Disallow: /\n"
        "\n"
        "User-agent: Document-It\n"
        "Disallow: /private/\n"
        "Allow: /private/press/\n"
    ))
    assert not robots.allowed(site.url("private/plans.html"))
    assert robots.allowed(site.url("private/press/release.html"))  # longer Allow wins though listed second
    assert robots.allowed(site.url("guide/index.html"))             # outside the rules
    assert robots.allowed(site.base_url + "/")
    assert site.hits == 1


def test_star_group_applies_when_no_group_names_us(site: SiteServer, tmp_path: Path) -> None:
    robots = robots_for(site, tmp_path, (
        "User-agent: someotherbot\n"
        "Disallow: /\n"
        "\n"
        "User-agent: *\n"
        "Allow: /drafts/public.html\n"
        "Disallow: /drafts/\n"
    ))
    assert not robots.allowed(site.url("drafts/wip.html"))
    assert robots.allowed(site.url("drafts/public.html"))
    assert robots.allowed(site.url("docs/page.html"))


def test_missing_robots_allows_everything(site: SiteServer, tmp_path: Path) -> None:
    robots = robots_for(site, tmp_path, None)
    assert robots.allowed(site.url("anything/at/all.html"))
    assert robots.crawl_delay(site.url("x")) is None
    assert robots.sitemaps(site.url("x")) == []


@pytest.mark.parametrize("status", [401, 403, 410])
def test_client_errors_allow_everything(status: int) -> None:
    robots = Robots(lambda url: (status, "User-agent: *\nDisallow: /\n"), AGENT)
    assert robots.allowed("https://docs.example/private/")


@pytest.mark.parametrize(("answer", "why"), [((503, ""), "HTTP 503"), ((None, ""), "unreachable")])
def test_server_error_or_unreachable_disallows_host_and_warns_once(
        answer: tuple[int | None, str], why: str, caplog: pytest.LogCaptureFixture) -> None:
    robots = Robots(lambda url: answer, AGENT)
    with caplog.at_level(logging.WARNING, logger="document_it.politeness"):
        assert not robots.allowed("https://docs.example/")
        assert not robots.allowed("https://docs.example/guide.html")
        assert robots.sitemaps("https://docs.example/") == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"robots.txt of docs.example unavailable ({why}): not crawling it"]


def test_unreachable_real_host_disallowed() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    robots = Robots(http_text, AGENT)
    assert not robots.allowed(f"http://127.0.0.1:{port}/page.html")


def test_non_web_urls_need_no_robots() -> None:
    calls: list[str] = []
    robots = Robots(lambda url: (calls.append(url), (503, ""))[1], AGENT)
    assert robots.allowed("file:///tmp/docs/index.md")
    assert robots.crawl_delay("file:///tmp/docs/index.md") is None
    assert calls == []


def test_hosts_are_kept_apart_and_credentials_not_sent(site: SiteServer, tmp_path: Path) -> None:
    (tmp_path / "robots.txt").write_text("User-agent: *\nDisallow: /\n")
    asked: list[str] = []
    robots = Robots(lambda url: (asked.append(url), http_text(url))[1], AGENT)
    port = site.base_url.rsplit(":", 1)[1]
    assert not robots.allowed(f"http://user:secret@127.0.0.1:{port}/a.html")
    assert not robots.allowed(f"http://127.0.0.1:{port}/b.html")      # same host, no second fetch
    assert not robots.allowed(f"http://LOCALHOST:{port}/c.html")      # another host name, its own fetch
    assert asked == [f"http://127.0.0.1:{port}/robots.txt", f"http://localhost:{port}/robots.txt"]


# --- Robots: crawl delay and sitemaps -----------------------------------------------------------

def test_crawl_delay_and_sitemaps_read(site: SiteServer, tmp_path: Path) -> None:
    robots = robots_for(site, tmp_path, (
        "Sitemap: https://docs.example/sitemap.xml\n"
        "User-agent: *\n"
        "Crawl-delay: 3\n"
        "Disallow: /tmp/\n"
        "\n"
        "Sitemap: https://docs.example/sitemap-blog.xml\n"
    ))
    assert robots.crawl_delay(site.url("a.html")) == 3.0
    assert robots.sitemaps(site.url("a.html")) == ["https://docs.example/sitemap.xml",
                                                   "https://docs.example/sitemap-blog.xml"]


def test_own_group_crawl_delay_wins_over_star(site: SiteServer, tmp_path: Path) -> None:
    robots = robots_for(site, tmp_path, (
        "User-agent: *\nCrawl-delay: 10\n\nUser-agent: document-it\nCrawl-delay: 2\nDisallow:\n"
    ))
    assert robots.crawl_delay(site.url("a.html")) == 2.0


def test_crawl_delay_capped_at_60_logged_once(site: SiteServer, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    robots = robots_for(site, tmp_path, "User-agent: *\nCrawl-delay: 3600\n")
    with caplog.at_level(logging.WARNING, logger="document_it.politeness"):
        assert robots.crawl_delay(site.url("a.html")) == 60.0
        assert robots.crawl_delay(site.url("b.html")) == 60.0
    assert len([r for r in caplog.records if "crawl delay" in r.getMessage()]) == 1


# --- Robots: concurrency --------------------------------------------------------------------------

def test_robots_fetched_once_per_host_under_16_threads(site: SiteServer, tmp_path: Path) -> None:
    (tmp_path / "robots.txt").write_text("User-agent: *\nDisallow: /secret/\n")
    calls: list[str] = []
    calls_lock = threading.Lock()

    def counting(url: str) -> tuple[int | None, str]:
        with calls_lock:
            calls.append(url)
        return http_text(url)

    robots = Robots(counting, AGENT)
    barrier = threading.Barrier(16)
    answers: list[bool] = []

    def ask(i: int) -> None:
        barrier.wait(timeout=5)
        answers.append(robots.allowed(site.url(f"secret/{i}.html" if i % 2 else f"open/{i}.html")))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert calls == [site.url("robots.txt")]
    assert site.hits == 1
    assert sorted(answers) == [False] * 8 + [True] * 8


def test_slow_robots_of_one_host_does_not_hold_up_another() -> None:
    release = threading.Event()

    def fetch(url: str) -> tuple[int | None, str]:
        if url.startswith("https://slow.example/"):
            release.wait(timeout=10)
        return 404, ""

    robots = Robots(fetch, AGENT)
    slow = threading.Thread(target=robots.allowed, args=("https://slow.example/a",))
    slow.start()
    try:
        other = threading.Thread(target=robots.allowed, args=("https://fast.example/a",))
        other.start()
        other.join(timeout=5)
        assert not other.is_alive()
        assert slow.is_alive()
    finally:
        release.set()
        slow.join(timeout=5)


# --- HostGate: concurrency --------------------------------------------------------------------------

def test_per_host_rejects_less_than_one() -> None:
    with pytest.raises(ValueError):
        HostGate(per_host=0)


def test_at_most_per_host_holders_at_once() -> None:
    gate = HostGate(per_host=2)
    entered: queue.Queue[threading.Event] = queue.Queue()
    lock = threading.Lock()
    holders = peak = 0

    def download(i: int) -> None:
        nonlocal holders, peak
        done = threading.Event()
        with gate.slot(f"https://docs.example/{i}.html"):
            with lock:
                holders += 1
                peak = max(peak, holders)
            entered.put(done)
            done.wait(timeout=10)
            with lock:
                holders -= 1

    threads = [threading.Thread(target=download, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    inside = [entered.get(timeout=5), entered.get(timeout=5)]
    with pytest.raises(queue.Empty):  # the other six are queued at the gate, not inside
        entered.get(timeout=0.2)
    with lock:
        assert holders == 2
    for _ in range(6):  # each release lets exactly one more in
        inside.pop(0).set()
        inside.append(entered.get(timeout=5))
    for done in inside:
        done.set()
    for t in threads:
        t.join(timeout=5)
    assert peak == 2
    assert gate.stats() == {"hosts": 1, "max_in_flight": 2, "delayed": 0}


def test_hosts_do_not_limit_each_other() -> None:
    gate = HostGate(per_host=1)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gate.slot("https://a.example/page"):
            holding.set()
            release.wait(timeout=10)

    def pass_gate() -> None:
        with gate.slot("https://b.example/page"):
            pass

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(timeout=5)
    try:
        other = threading.Thread(target=pass_gate)
        other.start()
        other.join(timeout=5)
        assert not other.is_alive()
    finally:
        release.set()
        holder.join(timeout=5)
    assert gate.stats()["hosts"] == 2


def test_files_pass_the_gate_ungated() -> None:
    gate = HostGate(per_host=1)
    with gate.slot("file:///docs/a.md"), gate.slot("file:///docs/b.md"):
        pass
    assert gate.stats()["hosts"] == 0


# --- HostGate: interval between starts (fake clock, no real waiting) --------------------------------

class Sleeper:
    """Records requested sleeps; moves the fake clock on by them when `advance` is set."""

    def __init__(self, clock: FakeClock, advance: bool = True) -> None:
        self.clock, self.advance = clock, advance
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.advance:
            self.clock.advance(seconds)


def test_starts_spaced_by_delay() -> None:
    clock = FakeClock()
    sleep = Sleeper(clock)
    gate = HostGate(per_host=4, delay=1.0, clock=clock.monotonic, sleep=sleep)
    starts = []
    for page in ("a", "b", "c"):
        with gate.slot(f"https://docs.example/{page}"):
            starts.append(clock.monotonic())
    assert [s - starts[0] for s in starts] == [0.0, 1.0, 2.0]
    assert sleep.calls == [1.0, 1.0]
    assert gate.stats()["delayed"] == 2


def test_start_times_reserved_in_order_while_holders_overlap() -> None:
    clock = FakeClock()
    sleep = Sleeper(clock, advance=False)  # three arrive at the same instant
    gate = HostGate(per_host=4, delay=1.0, clock=clock.monotonic, sleep=sleep)
    with contextlib.ExitStack() as stack:
        for page in ("a", "b", "c"):
            stack.enter_context(gate.slot(f"https://docs.example/{page}"))
    assert sleep.calls == [1.0, 2.0]


def test_other_host_starts_without_waiting() -> None:
    clock = FakeClock()
    sleep = Sleeper(clock, advance=False)
    gate = HostGate(delay=5.0, clock=clock.monotonic, sleep=sleep)
    with gate.slot("https://a.example/1"), gate.slot("https://b.example/1"):
        pass
    assert sleep.calls == []


def test_robots_crawl_delay_larger_than_delay_wins(site: SiteServer, tmp_path: Path) -> None:
    (tmp_path / "robots.txt").write_text("User-agent: document-it\nCrawl-delay: 3\nDisallow: /x/\n")
    clock = FakeClock()
    sleep = Sleeper(clock)
    gate = HostGate(delay=1.0, robots=Robots(http_text, AGENT), clock=clock.monotonic, sleep=sleep)
    for page in ("a", "b", "c"):
        with gate.slot(site.url(page)):
            pass
    assert sleep.calls == [3.0, 3.0]


def test_configured_delay_larger_than_crawl_delay_wins() -> None:
    clock = FakeClock()
    sleep = Sleeper(clock)
    robots = Robots(lambda url: (200, "User-agent: *\nCrawl-delay: 1\n"), AGENT)
    gate = HostGate(delay=2.0, robots=robots, clock=clock.monotonic, sleep=sleep)
    for page in ("a", "b"):
        with gate.slot(f"https://docs.example/{page}"):
            pass
    assert sleep.calls == [2.0]
