"""fetch(DocRef) -> Fetched: one page's bytes over HTTP or from disk, within limits."""

from __future__ import annotations

import logging
import mimetypes
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote, urlparse

import requests

from . import __version__
from .config import Settings
from .errors import connection_reason
from .models import DocRef, Fetched

__all__ = ["FetchLimits", "fetch", "PAGE_TYPES", "INDEX_TYPES", "kind_of"]

log = logging.getLogger(__name__)

PAGE_TYPES = frozenset({
    "text/html", "application/xhtml+xml", "text/markdown", "text/x-markdown", "text/plain",
})
INDEX_TYPES = PAGE_TYPES | {"application/xml", "text/xml"}
_EXT_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".txt": "text/plain",
              ".html": "text/html", ".htm": "text/html", ".xml": "application/xml"}
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

    @classmethod
    def from_settings(cls, settings: Settings, allowed_types: frozenset[str] = PAGE_TYPES) -> "FetchLimits":
        return cls(settings.connect_timeout, settings.read_timeout, settings.max_page_bytes,
                   settings.max_redirects, allowed_types)

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


def fetch(ref: DocRef, limits: FetchLimits = FetchLimits()) -> Fetched:
    """Download one page; failures are recorded on the result, never raised."""
    start = time.perf_counter()
    scheme = urlparse(ref.url).scheme
    if scheme == "file":
        result = _fetch_file(ref, limits)
    elif scheme in ("http", "https"):
        result = _fetch_http(ref, limits)
    else:
        result = Fetched(ref, ref.url, error=f"unsupported URL scheme {scheme or '(none)'!r}")
    return replace(result, seconds=time.perf_counter() - start)


def _session(limits: FetchLimits) -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.headers["User-Agent"] = f"document-it/{__version__}"
        session.headers["Accept"] = "text/html, text/markdown;q=0.9, text/plain;q=0.8, */*;q=0.1"
        _local.session = session
    session.max_redirects = limits.max_redirects
    return session


def _fetch_http(ref: DocRef, limits: FetchLimits) -> Fetched:
    try:
        with _session(limits).get(ref.url, timeout=(limits.connect_timeout, limits.read_timeout),
                                  stream=True) as resp:
            final = resp.url or ref.url
            if resp.status_code >= 400:
                reason = f" {resp.reason}" if resp.reason else ""
                return Fetched(ref, final, status=resp.status_code, error=f"HTTP {resp.status_code}{reason}")
            media = kind_of(resp.headers.get("Content-Type", ""), final)
            if media not in limits.allowed_types:
                return Fetched(ref, final, status=resp.status_code,
                               error=f"unsupported content type {media or '(none)'}")
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limits.max_bytes:
                return Fetched(ref, final, status=resp.status_code, error=_too_large(limits))
            body, error = _read_capped(resp, limits)
            validators = {name: resp.headers[name] for name in ("ETag", "Last-Modified") if resp.headers.get(name)}
            return Fetched(ref, final, content=body, content_type=media, encoding=_charset(resp),
                           status=resp.status_code, error=error, validators=validators)
    except requests.TooManyRedirects:
        return Fetched(ref, ref.url, error=f"too many redirects (more than {limits.max_redirects})")
    except requests.Timeout:
        return Fetched(ref, ref.url, error=f"timed out (connect {limits.connect_timeout:g}s, "
                                           f"read {limits.read_timeout:g}s)")
    except requests.RequestException as exc:
        return Fetched(ref, ref.url, error=f"connection failed: {connection_reason(exc)}")


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
    if media not in limits.allowed_types:
        return Fetched(ref, ref.url, error=f"unsupported content type {media or '(unknown)'}")
    try:
        if path.stat().st_size > limits.max_bytes:
            return Fetched(ref, ref.url, error=_too_large(limits))
        return Fetched(ref, ref.url, content=path.read_bytes(), content_type=media)
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


def _too_large(limits: FetchLimits) -> str:
    return f"too large (over {limits.max_bytes:,} bytes)"
