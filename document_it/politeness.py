"""Being polite to each host: its robots.txt, and how many downloads start how often."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import urllib.robotparser
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import urlsplit

__all__ = ["FetchText", "Robots", "HostGate", "MAX_CRAWL_DELAY_S"]

log = logging.getLogger(__name__)

FetchText = Callable[[str], tuple[int | None, str]]
"""url -> (HTTP status, or None when the host is unreachable; body text)."""

MAX_CRAWL_DELAY_S = 60.0
_WEB = ("http", "https")


def _origin(url: str) -> str | None:
    """'scheme://host[:port]' of an http(s) URL (credentials dropped), None for anything else."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2].lower()
    if parts.scheme not in _WEB or not host:
        return None
    return f"{parts.scheme}://{host}"


@dataclass(frozen=True)
class _HostRules:
    """What one host's robots.txt says to our agent, read once."""

    parser: urllib.robotparser.RobotFileParser
    delay: float | None


class Robots:
    """robots.txt per host, read once, honoured for one user agent."""

    def __init__(self, fetch_text: FetchText, agent: str) -> None:
        self._fetch_text = fetch_text
        self.agent = agent
        self._token = agent.split("/")[0].strip()  # RobotFileParser matches on the product token too
        self._hosts: dict[str, _HostRules] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def allowed(self, url: str) -> bool:
        """Whether the host's robots.txt lets our agent fetch `url` (always true for non-http(s) URLs)."""
        rules = self._rules(url)
        return True if rules is None else rules.parser.can_fetch(self._token, url)

    def crawl_delay(self, url: str) -> float | None:
        """Seconds the host asks between requests (at most MAX_CRAWL_DELAY_S), None when it says nothing."""
        rules = self._rules(url)
        return None if rules is None else rules.delay

    def sitemaps(self, url: str) -> list[str]:
        """The Sitemap: URLs listed in the robots.txt of `url`'s host."""
        rules = self._rules(url)
        return [] if rules is None else list(rules.parser.site_maps() or [])

    def _rules(self, url: str) -> _HostRules | None:
        origin = _origin(url)
        if origin is None:
            return None
        rules = self._hosts.get(origin)
        if rules is not None:
            return rules
        with self._guard:  # held only to find the host's own lock
            lock = self._locks.setdefault(origin, threading.Lock())
        with lock:  # one fetch per host; other hosts go on
            rules = self._hosts.get(origin)
            if rules is None:
                rules = self._hosts[origin] = self._read(origin)
        return rules

    def _read(self, origin: str) -> _HostRules:
        host = origin.partition("://")[2]
        status, text = self._fetch_text(f"{origin}/robots.txt")
        parser = urllib.robotparser.RobotFileParser(f"{origin}/robots.txt")
        if status is not None and 200 <= status < 300:
            parser.parse(text.splitlines())
            _longest_match_first(parser)
        elif status is not None and 300 <= status < 500:
            # RFC 9309 2.3.1.3: unavailable (incl. 401/403 and redirects not followed) -> no limits.
            log.debug("robots.txt of %s unavailable (HTTP %s): crawling without rules", host, status)
            parser.allow_all = True
        else:
            # RFC 9309 2.3.1.4: unreachable or a server error -> assume complete disallow.
            why = "unreachable" if status is None else f"HTTP {status}"
            log.warning("robots.txt of %s unavailable (%s): not crawling it", host, why)
            parser.disallow_all = True
        return _HostRules(parser, self._delay(parser, host))

    def _delay(self, parser: urllib.robotparser.RobotFileParser, host: str) -> float | None:
        delay = parser.crawl_delay(self._token)
        if delay is None:
            return None
        if delay > MAX_CRAWL_DELAY_S:
            log.warning("robots.txt of %s asks for a %s s crawl delay: using %.0f s",
                        host, delay, MAX_CRAWL_DELAY_S)
            return MAX_CRAWL_DELAY_S
        return float(delay)


def _longest_match_first(parser: urllib.robotparser.RobotFileParser) -> None:
    """Order each group's rules so the parser's first match is RFC 9309's most specific one (Allow wins ties)."""
    groups = [*parser.entries, *([parser.default_entry] if parser.default_entry else [])]
    for group in groups:
        group.rulelines.sort(key=lambda rule: (-len(rule.path), not rule.allowance))


class _Host:
    """One host's share of the gate: who holds a slot, and when the next may start."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.in_flight = 0
        self.max_in_flight = 0
        self.next_start = float("-inf")


class HostGate:
    """At most `per_host` downloads at once per host, and a minimum interval between their starts."""

    def __init__(self, per_host: int = 4, delay: float = 0.0, robots: Robots | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, share: int = 1) -> None:
        if per_host < 1:
            raise ValueError("per_host must be at least 1")
        if delay < 0:
            raise ValueError("delay must not be negative")
        self.per_host = per_host
        self.delay = delay
        self.share = max(1, share)  # processes downloading from the same hosts, each with its own gate
        self._robots = robots
        self._clock = clock
        self._sleep = sleep
        self._hosts: dict[str, _Host] = {}
        self._guard = threading.Lock()
        self._delayed = 0

    @contextlib.contextmanager
    def slot(self, url: str) -> Iterator[None]:
        """Hold one of the host's download slots, started no sooner than the host's interval allows."""
        origin = _origin(url)
        if origin is None:  # files and the like: no host to be polite to
            yield
            return
        interval = self._interval(url)  # may read robots.txt; before taking any lock
        with self._guard:
            host = self._hosts.setdefault(origin, _Host())
        with host.changed:
            host.changed.wait_for(lambda: host.in_flight < self.per_host)
            host.in_flight += 1
            host.max_in_flight = max(host.max_in_flight, host.in_flight)
            now = self._clock()
            start = max(now, host.next_start)
            host.next_start = start + interval  # reserved under the lock, waited out below without it
        try:
            if start > now:
                with self._guard:
                    self._delayed += 1
                self._sleep(start - now)
            yield
        finally:
            with host.changed:
                host.in_flight -= 1
                host.changed.notify()

    def stats(self) -> dict[str, int]:
        """Hosts seen, the most concurrent downloads on any one host, and starts that waited for an interval."""
        with self._guard:
            hosts = list(self._hosts.values())
            delayed = self._delayed
        return {"hosts": len(hosts), "max_in_flight": max((h.max_in_flight for h in hosts), default=0),
                "delayed": delayed}

    def _interval(self, url: str) -> float:
        asked = self._robots.crawl_delay(url) if self._robots is not None else None
        return max(self.delay, (asked or 0.0) * self.share)  # N gates each waiting N × Crawl-delay
