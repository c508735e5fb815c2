"""fetch(DocRef) -> Fetched: one page's bytes over HTTP or from disk, within limits and politely."""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import stat
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, ContextManager, Iterator
from urllib.parse import unquote, urljoin, urlparse

import requests

from . import __version__
from .config import Settings
from .errors import connection_reason
from .models import DocRef, Fetched
from .encoding import decode
from .netguard import check_url
from .pinned import blocked_by, guarded_session

__all__ = ["FetchLimits", "fetch", "fetch_text", "USER_AGENT", "PAGE_TYPES", "INDEX_TYPES", "ANY_TYPE", "kind_of", "Gate"]

log = logging.getLogger(__name__)

PAGE_TYPES = frozenset({
    "text/html", "application/xhtml+xml", "text/markdown", "text/x-markdown", "text/plain",
})
INDEX_TYPES = PAGE_TYPES | {"application/xml", "text/xml", "application/gzip", "application/x-gzip"}  # sitemap.xml.gz
ANY_TYPE = frozenset({"*"})
# url -> why following a redirect there is refused (off the crawl's scope), or None
RedirectCheck = Callable[[str], "str | None"]
# url -> a context manager held while that host is being downloaded from (per-host politeness)
Gate = Callable[[str], ContextManager[None]]
_EXT_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".txt": "text/plain",
              ".html": "text/html", ".htm": "text/html", ".xml": "application/xml"}
USER_AGENT = f"document-it/{__version__}"
_CHUNK = 64 * 1024
_local = threading.local()


@dataclass(frozen=True)
class FetchLimits:
    """How long, how big and how far a download may go."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5
    allowed_types: frozenset[str] = PAGE_TYPES
    allow_private: bool = False  # loopback, private and link-local addresses (checked on every hop)

    @classmethod
    def from_settings(cls, settings: Settings, allowed_types: frozenset[str] = PAGE_TYPES) -> "FetchLimits":
        return cls(settings.connect_timeout, settings.read_timeout, settings.max_page_bytes,
                   settings.max_redirects, allowed_types, settings.allow_private)

    def accepts(self, media: str) -> bool:
        return "*" in self.allowed_types or media in self.allowed_types

    @property
    def deadline_s(self) -> float:
        """Whole-download budget, so a server that drips bytes cannot hold a thread forever."""
        return self.connect_timeout + 2 * self.read_timeout


def kind_of(content_type: str, url: str) -> str:
    """Media type from the header, or from the file extension when the header says nothing useful."""
    media = content_type.split(";")[0].strip().lower()
    if media and media not in ("application/octet-stream", "binary/octet-stream"):
        return media
    suffix = Path(urlparse(url).path).suffix.lower()
    return _EXT_TYPES.get(suffix) or mimetypes.guess_type(url)[0] or media


def fetch(ref: DocRef, limits: FetchLimits = FetchLimits(), validators: dict[str, str] | None = None,
          redirect_check: RedirectCheck | None = None, gate: Gate | None = None) -> Fetched:
    """Download one page; failures are recorded on the result, never raised.

    `validators` (ETag / Last-Modified from an earlier download) make the request conditional: an
    unchanged page comes back as status 304 with no content. `redirect_check` may refuse a redirect
    target (a crawl's scope); `gate` is held around each request to a host (politeness).
    """
    start = time.perf_counter()
    scheme = urlparse(ref.url).scheme
    if scheme == "file":
        result = _fetch_file(ref, limits)
    elif scheme in ("http", "https"):
        result = _fetch_http(ref, limits, validators or {}, redirect_check, gate)
    else:
        result = Fetched(ref, ref.url, error=f"unsupported URL scheme {scheme or '(none)'!r}")
    return replace(result, seconds=time.perf_counter() - start)


def _session(allow_private: bool = False) -> requests.Session:
    """This thread's session (one per thread: requests sessions are not thread-safe)."""
    sessions = getattr(_local, "sessions", None)
    if sessions is None:
        sessions = _local.sessions = {}
    session = sessions.get(allow_private)
    if session is None:
        session = sessions[allow_private] = guarded_session(allow_private)
        session.headers["User-Agent"] = USER_AGENT
        session.headers["Accept"] = "text/html, text/markdown;q=0.9, text/plain;q=0.8, */*;q=0.1"
    return session


def fetch_text(url: str, limits: FetchLimits = FetchLimits(), gate: Gate | None = None) -> tuple[int | None, str]:
    """(HTTP status or None when unreachable, body text) of any small text file, e.g. robots.txt."""
    got = fetch(DocRef(url), replace(limits, allowed_types=ANY_TYPE, max_bytes=min(limits.max_bytes, 512 * 1024)),
                gate=gate)
    if got.status is None and not got.ok:
        return None, ""
    return got.status, decode(got.content, got.encoding) if got.ok else ""


def _fetch_http(ref: DocRef, limits: FetchLimits, validators: dict[str, str],
                redirect_check: RedirectCheck | None, gate: Gate | None) -> Fetched:
    url, seen = ref.url, {ref.url}
    headers = _conditional(validators)
    try:
        for _hop in range(limits.max_redirects + 1):
            refused = check_url(url, limits.allow_private)
            if refused:
                return Fetched(ref, url, error=refused)
            with gate(url) if gate else _nothing(), \
                    _session(limits.allow_private).get(url, timeout=(limits.connect_timeout, limits.read_timeout), stream=True,
                                   allow_redirects=False, headers=headers) as resp:
                if resp.is_redirect:
                    target = urljoin(url, resp.headers["Location"])
                    if urlparse(target).scheme not in ("http", "https"):
                        return Fetched(ref, url, status=resp.status_code,
                                       error=f"redirected to a non-http URL {target[:200]} (not followed)")
                    why = redirect_check(target) if redirect_check else None
                    if why:
                        return Fetched(ref, url, status=resp.status_code, error=f"redirected to {target[:200]}: {why}")
                    if target in seen:
                        return Fetched(ref, url, status=resp.status_code, error=f"redirect loop at {target[:200]}")
                    seen.add(target)
                    url = target
                    continue
                return _response(ref, url, resp, limits)
        return Fetched(ref, url, error=f"too many redirects (more than {limits.max_redirects})")
    except requests.Timeout:
        return Fetched(ref, url, error=f"timed out (connect {limits.connect_timeout:g}s, "
                                       f"read {limits.read_timeout:g}s)")
    except requests.ConnectionError as exc:
        refused = blocked_by(exc)  # the address checked at connect time differed from the one checked before
        return Fetched(ref, url, error=f"refused {url}: {refused}" if refused else
                       f"connection failed: {connection_reason(exc)}")
    except requests.RequestException as exc:
        return Fetched(ref, url, error=f"connection failed: {connection_reason(exc)}")


def _response(ref: DocRef, final: str, resp: requests.Response, limits: FetchLimits) -> Fetched:
    if resp.status_code == 304:
        return Fetched(ref, final, status=304)
    if resp.status_code >= 400:
        reason = f" {resp.reason}" if resp.reason else ""
        return Fetched(ref, final, status=resp.status_code, error=f"HTTP {resp.status_code}{reason}")
    media = kind_of(resp.headers.get("Content-Type", ""), final)
    if not limits.accepts(media):
        return Fetched(ref, final, status=resp.status_code, error=f"unsupported content type {media or '(none)'}")
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        return Fetched(ref, final, status=resp.status_code, error=_too_large(limits))
    body, error = _read_capped(resp, limits)
    validators = {name: resp.headers[name] for name in ("ETag", "Last-Modified") if resp.headers.get(name)}
    return Fetched(ref, final, content=body, content_type=media, encoding=_charset(resp),
                   status=resp.status_code, error=error, validators=validators)


def _conditional(validators: dict[str, str]) -> dict[str, str]:
    headers = {}
    if validators.get("ETag"):
        headers["If-None-Match"] = validators["ETag"]
    if validators.get("Last-Modified"):
        headers["If-Modified-Since"] = validators["Last-Modified"]
    return headers


def _read_capped(resp: requests.Response, limits: FetchLimits) -> tuple[bytes, str | None]:
    parts: list[bytes] = []
    size = 0
    deadline = time.monotonic() + limits.deadline_s
    for part in resp.iter_content(_CHUNK):
        size += len(part)
        if size > limits.max_bytes:
            return b"", _too_large(limits)
        if time.monotonic() > deadline:
            return b"", f"download took longer than {limits.deadline_s:g}s"
        parts.append(part)
    return b"".join(parts), None


def _fetch_file(ref: DocRef, limits: FetchLimits) -> Fetched:
    path = Path(unquote(urlparse(ref.url).path))
    media = kind_of("", ref.url)
    if not limits.accepts(media):
        return Fetched(ref, ref.url, error=f"unsupported content type {media or '(unknown)'}")
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # /dev/zero, a FIFO: reading would never end
            return Fetched(ref, ref.url, error=f"not a regular file: {path.name} (a device, pipe or socket)")
        with path.open("rb") as handle:
            content = handle.read(limits.max_bytes + 1)  # the size may change after stat
        if len(content) > limits.max_bytes:
            return Fetched(ref, ref.url, error=_too_large(limits))
        return Fetched(ref, ref.url, content=content, content_type=media)
    except FileNotFoundError:
        return Fetched(ref, ref.url, error=f"file not found: {path.name}")
    except OSError as exc:
        return Fetched(ref, ref.url, error=f"cannot read file: {exc.strerror or exc}")


def _charset(resp: requests.Response) -> str | None:
    for part in resp.headers.get("Content-Type", "").split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return None


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def _too_large(limits: FetchLimits) -> str:
    return f"too large (over {limits.max_bytes:,} bytes)"
