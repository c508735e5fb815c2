"""The simulator's HTTP side: routes (chat completions, models, the Files and Batch API, stats), JSON replies,
dropped connections. The server model behind it (what a request costs, what it answers) is SimServer in
llm_sim.py; files and batches are _sim_batches' BatchStore."""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
import socket
import struct
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs
from typing import TYPE_CHECKING, Any

from document_it.testing._sim_faults import ApiError

if TYPE_CHECKING:
    from document_it.testing.llm_sim import SimServer

__all__ = ["SimHTTPServer", "FINGERPRINT"]

logger = logging.getLogger("document_it.testing.llm_sim")

FINGERPRINT = "document-it-sim"


class _Handler(BaseHTTPRequestHandler):
    """HTTP handler; `self.server.sim` is the owning SimServer."""

    protocol_version = "HTTP/1.1"
    server_version = "document-it-sim/1.0"
    disable_nagle_algorithm = True  # headers and body leave at once, as from real servers (no 40 ms ACK stall)
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Route the default access log to logging at debug level."""
        logger.debug("%s - %s", self.address_string(), format % args)

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        """Send a JSON reply (or `payload` bytes as they are) with Content-Length."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, err: ApiError) -> None:
        """Send an error reply and count it."""
        self.server.sim._bump(errors=1)  # type: ignore[attr-defined]
        self._send(err.status, err.body)

    def _route(self) -> str:
        """Return the request path without query string or trailing slash."""
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        """Serve /v1/models, the Files and Batch API reads, and /stats."""
        sim: SimServer = self.server.sim  # type: ignore[attr-defined]
        route = self._route()
        try:
            if self._api("GET", b""):
                return None
            if route == "/stats":
                return self._send(200, sim.stats())
            if route in ("/v1/models", "/models"):
                sim._check_auth(self.headers.get("Authorization"))
                model = sim._quirks.model_entry({"id": sim.model, "object": "model", "created": 0,
                                                 "owned_by": FINGERPRINT})
                return self._send(200, {"object": "list", "data": [model]})
            raise ApiError(404, f"Unknown path: {route}")
        except ApiError as err:
            self._error(err)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        """Serve chat completions, file uploads, batch creation and cancel, and /stats/reset."""
        sim: SimServer = self.server.sim  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)  # always drain the body (keep-alive)
        raw = self.rfile.read(length) if length > 0 else b""
        route = self._route()
        try:
            if route == "/stats/reset":
                sim.reset_stats()
                return self._send(200, sim.stats())
            if self._api("POST", raw):
                return None
            if route not in ("/v1/chat/completions", "/chat/completions"):
                raise ApiError(404, f"Unknown path: {route}")
        except ApiError as err:
            return self._error(err)
        sim._enter(raw)
        self._streaming = None
        try:
            reply = sim._complete(raw, self.headers.get("Authorization"), self._start_stream)
        finally:
            sim._bump(in_flight=-1)  # before writing, so a client that has its reply sees consistent stats
        if reply.drop:
            return self._drop(abort=reply.drop == "reset")
        if self._streaming is not None:
            return self._finish_stream(reply.payload, self._streaming)
        self._send(reply.status, reply.payload, reply.headers)

    def do_DELETE(self) -> None:  # noqa: N802 - stdlib naming
        """Serve DELETE /v1/files/{id}."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)
        try:
            if not self._api("DELETE", b""):
                raise ApiError(404, f"Unknown path: {self._route()}")
        except ApiError as err:
            self._error(err)

    # -- the Files and Batch API ------------------------------------------------------------------------------
    def _api(self, method: str, raw: bytes) -> bool:
        """Serve a /v1/files or /v1/batches route (auth checked as for chat); False if the path is not one."""
        sim: SimServer = self.server.sim  # type: ignore[attr-defined]
        parts = self._route().removeprefix("/v1").strip("/").split("/")
        if parts[0] not in ("files", "batches"):
            return False
        sim._check_auth(self.headers.get("Authorization"))
        store = sim._batches
        query = {k: v[-1] for k, v in parse_qs(self.path.partition("?")[2]).items()}
        match (method, *parts):
            case ("POST", "files"):
                form = _form(self.headers.get("Content-Type") or "", raw)
                file = form.get("file")
                purpose = form.get("purpose")
                self._send(200, store.files.upload(file and file[1], file and file[0],
                                                   purpose and purpose[1].decode("utf-8", "replace")))
            case ("GET", "files"):
                self._send(200, store.files.list(query.get("purpose")))
            case ("GET", "files", file_id):
                self._send(200, store.files.get(file_id))
            case ("GET", "files", file_id, "content"):
                self._send(200, store.files.content(file_id), content_type="application/octet-stream")
            case ("DELETE", "files", file_id):
                self._send(200, store.files.delete(file_id))
            case ("POST", "batches"):
                self._send(200, store.create(_json(raw)))
            case ("GET", "batches"):
                self._send(200, store.list(_int(query.get("limit"), 20, "limit"), query.get("after")))
            case ("GET", "batches", batch_id):
                self._send(200, store.get(batch_id))
            case ("POST", "batches", batch_id, "cancel"):
                self._send(200, store.cancel(batch_id))
            case _:
                raise ApiError(404, f"Unknown path: {self._route()}")
        return True

    # -- streamed replies (server-sent events, as OpenAI's "stream": true) --------------------------------
    def _start_stream(self, model: str, include_usage: bool) -> None:
        """The first token is ready: send the event stream's headers and its first chunk (the role)."""
        self._streaming = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "model": model, "usage": include_usage}
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._event(self._chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                                  "finish_reason": None}]))

    def _finish_stream(self, payload: dict[str, Any], stream: dict[str, Any]) -> None:
        """The rest of a streamed reply: its message in one delta, the finish reason, the usage if asked for,
        and [DONE]."""
        choice = payload["choices"][0]
        message = choice["message"]
        delta: dict[str, Any] = {}
        if message.get("content"):
            delta["content"] = message["content"]
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        if delta:
            self._event(self._chunk([{"index": 0, "delta": delta, "finish_reason": None}]))
        self._event(self._chunk([{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]))
        if stream["usage"]:
            self._event({**self._chunk([]), "usage": payload["usage"]})
        self._event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        stream = self._streaming or {}
        return {"id": stream.get("id"), "object": "chat.completion.chunk", "created": int(time.time()),
                "model": stream.get("model"), "system_fingerprint": FINGERPRINT, "choices": choices}

    def _event(self, data: Any) -> None:
        """One server-sent event, as one HTTP chunk."""
        text = data if isinstance(data, str) else json.dumps(data)
        event = f"data: {text}\n\n".encode("utf-8")
        self.wfile.write(f"{len(event):x}\r\n".encode("ascii") + event + b"\r\n")

    def _drop(self, *, abort: bool) -> None:
        """Close the connection without a reply: a FIN, or (abort) an RST via SO_LINGER 0."""
        self.close_connection = True
        if abort:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # drop the makefile reference so close() really closes (and resets) the socket
            self.connection.close()  # the server's later shutdown() of this socket fails quietly


def _form(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Parse a multipart/form-data body into {field name: (filename, bytes)}."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(400, "The request must be multipart/form-data with 'purpose' and 'file'.")
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    if not message.is_multipart():
        raise ApiError(400, "The multipart/form-data body could not be parsed.")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            fields[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "We could not parse the JSON body of your request.") from None


def _int(text: str | None, default: int, param: str) -> int:
    try:
        return default if text is None else int(text)
    except ValueError:
        raise ApiError(400, f"Invalid '{param}': expected an integer.", param=param) from None


class SimHTTPServer(ThreadingHTTPServer):
    """Threading HTTP server with a deep accept backlog, serving `sim` (set by SimServer.start)."""

    daemon_threads = True
    request_queue_size = 256
    sim: SimServer

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log handler errors (e.g. a client hanging up) at debug level instead of printing them."""
        logger.debug("error while serving %s", client_address, exc_info=True)
