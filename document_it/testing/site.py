"""Serve a corpus folder over loopback HTTP for tests and benchmarks, with a few misbehaving routes."""

from __future__ import annotations

import functools
import logging
import threading
import time
import zlib
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

__all__ = ["SiteServer"]

log = logging.getLogger(__name__)

_MAX_SLOW_S = 30.0
_MAX_BIG = 50 * 1024 * 1024


class _Handler(SimpleHTTPRequestHandler):
    disable_nagle_algorithm = True  # headers and body leave together, as from a real web server
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".md": "text/markdown",
                      ".txt": "text/plain", ".xml": "application/xml"}

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.hits += 1  # type: ignore[attr-defined]
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        route = {
            "/_status": self._status, "/_redirect-loop": self._redirect_loop,
            "/_redirect-chain": self._redirect_chain, "/_redirect-to": self._redirect_to, "/_etag": self._etag, "/_slow": self._slow,
            "/_big": self._big, "/_binary": self._binary, "/_gzip-bomb": self._gzip_bomb,
            "/_charset": self._charset,
        }.get(url.path)
        if route:
            route(query)
        else:
            super().do_GET()

    def _send(self, code: int, body: bytes, ctype: str = "text/html", length: int | None = None,
              encoding: str | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def _charset(self, query: dict[str, str]) -> None:
        """A file of the folder (?file=NAME) sent as ?type= (text/html) with whatever ?charset= claims."""
        path = (Path(self.directory) / query.get("file", "")).resolve()
        if not path.is_file() or not path.is_relative_to(Path(self.directory).resolve()):
            self._send(404, b"<p>no such file</p>")
            return
        charset, media = query.get("charset"), query.get("type", "text/html")
        self._send(200, path.read_bytes(), f"{media}; charset={charset}" if charset else media)

    def _status(self, query: dict[str, str]) -> None:
        self._send(int(query.get("code", "500")), b"<p>status page</p>")

    def _redirect_loop(self, query: dict[str, str]) -> None:
        self.send_response(302)
        self.send_header("Location", "/_redirect-loop")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _redirect_chain(self, query: dict[str, str]) -> None:
        """/_redirect-chain?n=K redirects K times before landing on a page."""
        left = int(query.get("n", "3"))
        self._redirect(f"/_redirect-chain?n={left - 1}" if left > 0 else "/_status?code=200")

    def _redirect_to(self, query: dict[str, str]) -> None:
        """/_redirect-to?url=U redirects anywhere (tests of off-scope and non-http redirects)."""
        self._redirect(query.get("url", "/"))

    def _etag(self, query: dict[str, str]) -> None:
        """/_etag?v=V serves a page whose ETag is "V", answering 304 when If-None-Match names it."""
        tag = f'"{query.get("v", "1")}"'
        if self.headers.get("If-None-Match") == tag:
            self.send_response(304)
            self.send_header("ETag", tag)
            self.end_headers()
            return
        body = f"<html><body><main><h1>Version {tag}</h1><p>Tagged page.</p></main></body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("ETag", tag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _slow(self, query: dict[str, str]) -> None:
        time.sleep(min(float(query.get("seconds", "2")), _MAX_SLOW_S))
        self._send(200, b"<html><body><p>slow page finally here</p></body></html>")

    def _gzip_bomb(self, query: dict[str, str]) -> None:
        """/_gzip-bomb?mb=N: a small gzip body (Content-Encoding: gzip) that inflates to N MB of HTML."""
        self._send(200, _bomb(min(int(query.get("mb", "100")), 1024)), ctype="text/html; charset=utf-8",
                   encoding="gzip")

    def _big(self, query: dict[str, str]) -> None:
        size = min(int(query.get("bytes", str(6 * 1024 * 1024))), _MAX_BIG)
        declare = query.get("declare", "1") == "1"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        if declare:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        block = b"<p>" + b"x" * 1020 + b"</p>"
        try:
            for _ in range(size // len(block)):
                self.wfile.write(block)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading past its cap, as it should

    def _binary(self, query: dict[str, str]) -> None:
        self._send(200, b"\x89PNG\r\n\x1a\n" + b"\0" * 64, ctype="image/png")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("site: " + format, *args)


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up early (as fetch does past its size cap) is not an error worth printing."""

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("site: client %s went away", client_address, exc_info=True)


class SiteServer:
    """A static file server on 127.0.0.1 that stops by itself after `max_seconds`."""

    def __init__(self, root: Path | str, *, port: int = 0, max_seconds: float = 600) -> None:
        handler = functools.partial(_Handler, directory=str(root))
        self._server = _QuietServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self._server.hits = 0  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="site")
        self._timer = threading.Timer(max_seconds, self.stop)
        self._timer.daemon = True
        self._stopped = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def hits(self) -> int:
        return self._server.hits  # type: ignore[attr-defined]

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def start(self) -> "SiteServer":
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "SiteServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@functools.lru_cache(maxsize=4)
def _bomb(megabytes: int) -> bytes:
    """`megabytes` MB of one repeated HTML line, gzip-compressed a chunk at a time (about 1000:1)."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    chunk = b"<p>" + b"A" * (1024 * 1024 - 8) + b"</p>\n"
    body = [squeeze.compress(b"<html><body>")]
    body += [squeeze.compress(chunk) for _ in range(megabytes)]
    return b"".join(body) + squeeze.flush()
