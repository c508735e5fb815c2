"""How self-hosted servers differ, for the LLM simulator: formats, sloppy JSON, context, keys, model id, slots."""

from __future__ import annotations

import argparse
import enum
import json
import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from document_it.testing._schema_fill import find_prompt_schema
from document_it.testing._sim_faults import ApiError, completion_budget
from document_it.testing._sim_reply import content_text
from document_it.tokens import estimate_tokens

__all__ = [
    "FifoSlots",
    "FormatSupport",
    "KeyCheck",
    "KeyPolicy",
    "Quirks",
    "add_quirk_arguments",
    "quirk_kwargs",
    "slot_count",
]

_CLI_NAMES = ("no_json_schema", "tools_only", "sloppy_json", "context_tokens", "hidden_context", "token_ratio",
              "serial", "require_key", "no_key", "model_id")
_SLOPPY_PROSE = "Sure! Here is the JSON you asked for:"
_NO_KEY = ("You didn't provide an API key. You need to provide your API key in an Authorization header using "
           "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")


class FormatSupport(enum.Enum):
    """Which `response_format` types the server accepts."""

    ALL = "all"  # text, json_object, json_schema (OpenAI, vLLM)
    NO_JSON_SCHEMA = "no_json_schema"  # json_schema answers 500 (llama-cpp-python's server)
    TOOLS_ONLY = "tools_only"  # anything but text answers 400; structured output only through tools


class KeyPolicy(enum.Enum):
    """What the server asks of the Authorization header."""

    NONE = "none"  # any header or none (local servers; the default without api_key)
    ANY = "any"  # some non-empty bearer token (servers and proxies that only check that one is sent)
    EXACT = "exact"  # 'Bearer <api_key>' exactly


@dataclass(frozen=True)
class KeyCheck:
    """The API-key check of /v1 requests; never echoes a key."""

    policy: KeyPolicy = KeyPolicy.NONE
    key: str | None = None

    @classmethod
    def build(cls, api_key: str | None, *, require_key: bool = False, no_key: bool = False) -> KeyCheck:
        """Return the check for SimServer's api_key / require_key / no_key arguments."""
        if no_key and (require_key or api_key is not None):
            raise ValueError("no_key contradicts require_key and api_key")
        if api_key is not None:
            return cls(KeyPolicy.EXACT, api_key)
        return cls(KeyPolicy.ANY if require_key else KeyPolicy.NONE)

    def check(self, header: str | None) -> None:
        """Raise a 401 ApiError unless `header` satisfies the policy."""
        if self.policy is KeyPolicy.NONE:
            return
        scheme, _, token = (header or "").partition(" ")
        bearer = scheme.lower() == "bearer"
        if self.policy is KeyPolicy.ANY and not (bearer and token.strip()):
            raise ApiError(401, _NO_KEY)
        if self.policy is KeyPolicy.EXACT and (not bearer or token.strip() != self.key):
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")


@dataclass(frozen=True)
class Quirks:
    """Request checks and reply shaping that make the simulator behave like one self-hosted server."""

    formats: FormatSupport = FormatSupport.ALL
    sloppy_json: bool = False
    context_tokens: int = 0  # 0 = unlimited
    model_id: str | None = None  # set: requests naming another model get 404
    hidden_context: bool = False  # the window is not announced and refusals say it llama-cpp-python's way
    token_ratio: float = 1.0  # the server's tokens per token of document-it's estimate (a real tokenizer)

    @classmethod
    def build(cls, *, no_json_schema: bool = False, tools_only: bool = False, sloppy_json: bool = False,
              context_tokens: int = 0, model_id: str | None = None, hidden_context: bool = False,
              token_ratio: float = 1.0) -> Quirks:
        """Return the quirks for SimServer's keyword arguments."""
        if no_json_schema and tools_only:
            raise ValueError("choose one of no_json_schema and tools_only")
        if context_tokens < 0:
            raise ValueError("context_tokens must be >= 0")
        if not 0.2 <= token_ratio <= 5:
            raise ValueError("token_ratio must be between 0.2 and 5")
        formats = (FormatSupport.TOOLS_ONLY if tools_only else
                   FormatSupport.NO_JSON_SCHEMA if no_json_schema else FormatSupport.ALL)
        return cls(formats, bool(sloppy_json), int(context_tokens), model_id or None, bool(hidden_context),
                   float(token_ratio))

    def count(self, text: str) -> int:
        """Return the prompt tokens this server's tokenizer counts in `text`."""
        return math.ceil(estimate_tokens(text) * self.token_ratio)

    def check(self, body: dict[str, Any], prompt_tokens: int) -> None:
        """Raise the ApiError this server answers `body` with (unknown model, format, context length), if any."""
        requested = body.get("model")
        if self.model_id is not None and requested is not None and requested != self.model_id:
            raise ApiError(404, f"The model `{requested}` does not exist or you do not have access to it.",
                           param="model", code="model_not_found")
        self._check_format(body.get("response_format"))
        completion = 0 if self.hidden_context else completion_budget(body, 0)  # llama-cpp clamps max_tokens
        if self.context_tokens and prompt_tokens + completion > self.context_tokens:
            raise ApiError(400, self._too_long(prompt_tokens, completion), param="messages",
                           code="context_length_exceeded")

    def _check_format(self, fmt: Any) -> None:
        """Raise when the server does not support this response_format."""
        kind = fmt.get("type") if isinstance(fmt, dict) else fmt
        if self.formats is FormatSupport.NO_JSON_SCHEMA and kind == "json_schema":
            raise ApiError(500, "response_format type json_schema is not supported; use text or json_object",
                           kind="server_error", param="response_format")
        if self.formats is FormatSupport.TOOLS_ONLY and fmt is not None and kind != "text":
            raise ApiError(400, f"response_format is not supported by this server (got type {kind!r}); use tools "
                                "(function calling) for structured output", param="response_format")

    def _too_long(self, prompt: int, completion: int) -> str:
        """Return OpenAI's context-length message (llama-cpp-python's when the window is hidden)."""
        if self.hidden_context:
            return f"Requested tokens ({prompt}) exceed context window of {self.context_tokens}"
        head = f"This model's maximum context length is {self.context_tokens} tokens. However, "
        if not completion:
            return head + f"your messages resulted in {prompt} tokens. Please reduce the length of the messages."
        return head + (f"you requested {prompt + completion} tokens ({prompt} in the messages, {completion} in the "
                       "completion). Please reduce the length of the messages or completion.")

    def shape(self, body: dict[str, Any], message: dict[str, Any], generated: str) -> tuple[dict[str, Any], str]:
        """Return (message, generated text) as this server's model writes it: sloppy JSON content if asked."""
        fmt = body.get("response_format") if isinstance(body.get("response_format"), dict) else {}
        if not self.sloppy_json or message.get("tool_calls") or fmt.get("type") not in ("json_object", "json_schema"):
            return message, generated
        try:
            value = json.loads(message.get("content") or "")
        except ValueError:
            return message, generated
        content = _sloppy(value, _optional_fields(body, fmt))
        return {**message, "content": content}, content

    def model_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Return a /v1/models entry with the context length announced the way vLLM does."""
        return {**entry, "max_model_len": self.context_tokens} if self.context_tokens and not self.hidden_context \
            else entry


def _optional_fields(body: dict[str, Any], fmt: dict[str, Any]) -> set[str]:
    """Return the top-level properties the reply's schema does not require."""
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
    else:
        schema = find_prompt_schema(content_text(m.get("content")) for m in body["messages"])
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return set()
    return set(schema["properties"]) - set(schema.get("required") or [])


def _sloppy(value: Any, optional: set[str]) -> str:
    """Write `value` the way small models do: a line of prose, a ```json fence, capitalised keys, one field left out."""
    _drop_one(value, optional)
    text = json.dumps(_capitalised(value), ensure_ascii=False, indent=2)
    return f"{_SLOPPY_PROSE}\n```json\n{text}\n```"


def _drop_one(value: Any, optional: set[str]) -> bool:
    """Delete, in place, the first optional (top level) or list-valued field of an object that has others."""
    if isinstance(value, dict):
        if len(value) > 1:
            for key in [*(k for k in value if k in optional), *(k for k, v in value.items() if isinstance(v, list))]:
                del value[key]
                return True
        return any(_drop_one(child, set()) for child in value.values())
    if isinstance(value, list):
        return any(_drop_one(child, set()) for child in value)
    return False


def _capitalised(value: Any) -> Any:
    """Return `value` with every object key's first letter upper-cased ("summary" -> "Summary")."""
    if isinstance(value, dict):
        return {key[:1].upper() + key[1:]: _capitalised(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_capitalised(child) for child in value]
    return value


class FifoSlots:
    """`size` service slots handed out strictly in arrival order (llama.cpp's slots with a waiting queue)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("FifoSlots needs at least one slot")
        self._free = size
        self._queue: deque[threading.Event] = deque()
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """Return how many callers are queued for a slot."""
        with self._lock:
            return len(self._queue)

    def acquire(self, stopped: threading.Event, poll: float = 0.1) -> bool:
        """Wait for a slot in FIFO order; return False (holding none) if `stopped` is set first."""
        with self._lock:
            if self._free and not self._queue:
                self._free -= 1
                return True
            turn = threading.Event()
            self._queue.append(turn)
        while not turn.wait(poll):
            if stopped.is_set():
                with self._lock:
                    if not turn.is_set():  # else a release handed us the slot meanwhile: keep it
                        self._queue.remove(turn)
                        return False
        return True

    def release(self) -> None:
        """Hand the slot to the longest waiter, else free it."""
        with self._lock:
            if self._queue:
                self._queue.popleft().set()
            else:
                self._free += 1


def slot_count(capacity: int, serial: bool) -> int:
    """Return the number of service slots (0 = unlimited): `serial` means exactly one."""
    if serial and capacity not in (0, 1):
        raise ValueError("serial means capacity 1")
    return 1 if serial else int(capacity)


def add_quirk_arguments(p: argparse.ArgumentParser) -> None:
    """Add the self-hosted-server flags (llama.cpp server, vLLM, Ollama, LM Studio) to the simulator's CLI."""
    g = p.add_argument_group("self-hosted server modes")
    g.add_argument("--no-json-schema", action="store_true",
                   help="response_format json_schema answers HTTP 500 (like llama-cpp-python's server); json_object "
                        "and tools still work")
    g.add_argument("--tools-only", action="store_true",
                   help="any response_format but text answers HTTP 400; structured output only via tools")
    g.add_argument("--sloppy-json", action="store_true",
                   help="JSON content (json_object/json_schema) comes with prose, a ```json fence, capitalised keys "
                        "and one optional or list field left out, as small models write it; tool arguments stay clean")
    g.add_argument("--context-tokens", type=int, default=0, metavar="N",
                   help="prompt + max_tokens above N answers 400 context_length_exceeded; /v1/models announces "
                        "max_model_len N (0 = unlimited)")
    g.add_argument("--hidden-context", action="store_true",
                   help="with --context-tokens: /v1/models does not announce the window, max_tokens is clamped to "
                        "what is left, and only a prompt longer than the window is refused, saying 'Requested "
                        "tokens (P) exceed context window of N' (llama-cpp-python's own words)")
    g.add_argument("--token-ratio", type=float, default=1.0, metavar="R",
                   help="count R prompt tokens for each token document-it estimates (a real tokenizer on code or "
                        "other languages counts more than four characters a token; default 1.0)")
    g.add_argument("--serial", action="store_true",
                   help="serve one chat request at a time, the rest queue in arrival order (--capacity 1, one slot)")
    g.add_argument("--require-key", action="store_true",
                   help="any non-empty 'Authorization: Bearer ...' is accepted, none gets 401 (--api-key checks the "
                        "key itself; without either, no key is checked)")
    g.add_argument("--no-key", action="store_true",
                   help="accept any or no Authorization header, like local servers (already so without --api-key)")
    g.add_argument("--model-id", default=None,
                   help="model id /v1/models lists instead of --model (e.g. /models/qwen2.5-0.5b-instruct-q4_k_m.gguf);"
                        " chat requests naming another model get 404 (unset: any model name is accepted)")


def quirk_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Return the SimServer keyword arguments for the flags added by `add_quirk_arguments`."""
    return {name: getattr(args, name) for name in _CLI_NAMES}
