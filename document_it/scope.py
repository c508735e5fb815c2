"""Which URLs a crawl may follow, and the normal form each URL is fetched and de-duplicated under."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import SplitResult, urlsplit, urlunsplit

from .errors import ConfigError

__all__ = ["Scope", "check_scope_flags", "clean_url", "is_page_link", "url_key"]

_WEB = ("http", "https")
_DEFAULT_PORT = {"http": "80", "https": "443"}
_INDEX = ("index.html", "index.htm")
# what documentation generators add beside the pages: copies of each page's source, assets, the
# alphabetical index and the search page (a crawl would analyse them as pages; they add nothing)
_GENERATED_FOLDERS = ("_sources", "_static", "_images", "_downloads")
_GENERATED_PAGES = frozenset({"genindex.html", "search.html", "py-modindex.html", "404.html"})
_NOT_PAGES = frozenset(
    "png jpg jpeg gif svg webp ico bmp  mp4 webm mp3 wav  zip tar gz tgz bz2 xz 7z whl egg"
    "  exe dmg pkg deb rpm msi bin so dll  woff woff2 ttf otf eot  css js map mjs  json yaml yml csv"
    "  pdf doc docx xls xlsx ppt pptx".split()
)


def _host_port(parts: SplitResult) -> str:
    """`host[:port]` lower-cased, without credentials and without the scheme's default port."""
    host_port = parts.netloc.rpartition("@")[2].lower()
    host, sep, port = host_port.rpartition(":")
    if sep and not host_port.endswith("]") and port in ("", _DEFAULT_PORT.get(parts.scheme.lower())):
        return host
    return host_port


def _normalise(url: str, *, as_key: bool) -> str:
    """The shared work of `url_key` (as_key=True) and `clean_url`."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url
    userinfo, at, _ = parts.netloc.rpartition("@")
    netloc = userinfo + at + _host_port(parts)
    path = parts.path
    if as_key:
        folder, slash, last = path.rpartition("/")
        path = (folder + slash if last in _INDEX else path).rstrip("/")
    if netloc and not path:
        path = "/"
    pieces = [piece for piece in parts.query.split("&") if piece]
    query = "&".join(sorted(pieces, key=lambda piece: piece.partition("=")[::2]))  # by key, then value
    return urlunsplit((parts.scheme.lower(), netloc, path, query, ""))


def url_key(url: str) -> str:
    """The key two URLs share when they name the same page (used to de-duplicate a crawl)."""
    return _normalise(url, as_key=True)


def clean_url(url: str) -> str:
    """The URL to fetch: lower-case scheme and host, no fragment, no default port, sorted query."""
    return _normalise(url, as_key=False)


def is_page_link(url: str) -> bool:
    """False for links that are obviously not documents (images, archives, scripts, mailto:, ...)
    or are a documentation generator's by-products (Sphinx's page sources, general index, search page)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    if parts.scheme and parts.scheme.lower() not in _WEB:
        return False
    folder, _, last = parts.path.rpartition("/")
    if any(f"/{name}/" in f"{folder}/" for name in _GENERATED_FOLDERS) or last in _GENERATED_PAGES:
        return False
    return "." not in last or last.rpartition(".")[2].lower() not in _NOT_PAGES


def _prefix(path: str) -> str:
    """The folder of a start path: '/docs/guide' and '/docs/guide/' → '/docs/guide/', '/docs/a.html' → '/docs/'."""
    folder, _, last = path.rpartition("/")
    return folder + "/" if "." in last else path.rstrip("/") + "/"


def _domain(value: str) -> str:
    """The host of an --allow-domain value given as 'docs.example.org' or 'https://docs.example.org:8443'."""
    text = value.strip()
    try:
        host = urlsplit(text if "//" in text else "//" + text).hostname or ""
    except ValueError:
        host = ""
    host = host.rstrip(".").removeprefix("*.").lstrip(".")
    if not host:
        raise ConfigError(f"--allow-domain {value!r} is not a host name")
    return host


def _compile(flag: str, patterns: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    """Compiled patterns, or a ConfigError naming the flag and the broken pattern."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ConfigError(f"{flag} {pattern!r} is not a valid regular expression: {exc.msg}") from None
    return tuple(compiled)


def check_scope_flags(allow_domains: Sequence[str], include: Sequence[str], exclude: Sequence[str]) -> None:
    """Raise ConfigError for a malformed --allow-domain / --include / --exclude, before any work starts."""
    for value in allow_domains:
        _domain(value)
    _compile("--include", include)
    _compile("--exclude", exclude)


@dataclass(frozen=True)
class Scope:
    """Which URLs a crawl may follow: the start's host and folder, allowed domains, include/exclude patterns."""

    netloc: str
    prefix: str
    allow_domains: tuple[str, ...] = ()
    include: tuple[re.Pattern[str], ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def from_start(cls, start_url: str, allow_domains: Sequence[str] = (), include: Sequence[str] = (),
                   exclude: Sequence[str] = ()) -> Scope:
        """The scope of a crawl starting at `start_url`; bad flags raise ConfigError."""
        try:
            parts = urlsplit(start_url.strip())
        except ValueError as exc:
            raise ConfigError(f"start URL {start_url!r} is not a valid URL ({exc})") from None
        if parts.scheme.lower() not in _WEB or not parts.hostname:
            raise ConfigError(f"start URL {start_url!r} must be an http or https URL with a host")
        return cls(netloc=_host_port(parts), prefix=_prefix(parts.path),
                   allow_domains=tuple(dict.fromkeys(_domain(d) for d in allow_domains)),
                   include=_compile("--include", include), exclude=_compile("--exclude", exclude))

    def allows(self, url: str) -> bool:
        """True when the crawl may follow `url`."""
        try:
            parts = urlsplit(url.strip())
            host = (parts.hostname or "").rstrip(".")
        except ValueError:
            return False
        if parts.scheme.lower() not in _WEB or not host:
            return False
        same_site = _host_port(parts) == self.netloc
        if not same_site and not any(host == d or host.endswith("." + d) for d in self.allow_domains):
            return False
        if self.include:
            in_scope = any(p.search(url) for p in self.include)
        else:  # the start's site keeps to its folder; allowed domains may use any path
            path = parts.path or "/"
            in_scope = not same_site or path.startswith(self.prefix) or path == self.prefix.rstrip("/")
        return in_scope and not any(p.search(url) for p in self.exclude)

    def describe(self) -> str:
        """One line for logs: '127.0.0.1:8123/docs/ (+ example.org; include 2, exclude 1 patterns)'."""
        extras = [f"+ {', '.join(self.allow_domains)}"] if self.allow_domains else []
        counts = [f"{name} {len(pats)}" for name, pats in (("include", self.include), ("exclude", self.exclude)) if pats]
        if counts:
            extras.append(", ".join(counts) + (" pattern" if len(self.include) + len(self.exclude) == 1 else " patterns"))
        return self.netloc + self.prefix + (f" ({'; '.join(extras)})" if extras else "")
