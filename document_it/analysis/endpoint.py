"""Before any page: is the LLM server there, does it take the key, which model will answer, and how large is
its context window? Servers people run themselves list what they serve at /v1/models (often by file path);
with no --model given the first one listed is used, and a --model the server does not have is one clear line
naming what it has. The window is read from the model's entry (vLLM's max_model_len and the like) or
llama.cpp's /props; when nothing says, the run starts from 8192 and learns from refusals."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlparse

import requests

from ..config import PLACEHOLDER_KEY, Settings
from ..errors import LLMAuthError, LLMError, connection_reason
from .context import MIN_CONTEXT_TOKENS

__all__ = ["check_endpoint", "OPENAI_URL", "LOADING_WAIT_S", "announced_context", "pick_model"]

log = logging.getLogger(__name__)

OPENAI_URL = "https://api.openai.com/v1"
LOADING_WAIT_S = 120.0  # how long a server that is still loading its model (HTTP 503) is waited for


def check_endpoint(settings: Settings) -> Settings:
    """The settings with the model the server will use; raises LLMError / LLMAuthError for what would
    fail every page. Other answers (a server without /models, say) are left to the run."""
    host = urlparse(settings.llm_base_url or OPENAI_URL).netloc.rpartition("@")[2]  # never credentials in a message
    url = (settings.llm_base_url or OPENAI_URL).rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {settings.api_key or PLACEHOLDER_KEY}"}  # as the chat requests will
    try:
        resp = _models(url, headers, host, LOADING_WAIT_S)
    except requests.ConnectionError as exc:
        raise LLMError(f"cannot reach the LLM at {host}: {connection_reason(exc)} (check --llm-base-url)") from None
    except requests.RequestException as exc:
        log.info("could not check %s before the run: %s", host, type(exc).__name__)
        return settings
    if resp.status_code == 401:
        raise LLMAuthError(f"API key rejected by {host} (HTTP 401)")
    if resp.status_code == 403:
        raise LLMAuthError(f"API key not allowed at {host} (HTTP 403)")
    entries = _entries(resp) if resp.ok else []
    model = pick_model(settings, [str(entry["id"]) for entry in entries], host)
    if settings.context_tokens is not None:
        return settings.with_(model=model)
    window = announced_context(next((e for e in entries if str(e["id"]) == model), {}))
    if window is None and settings.llm_base_url:
        window = _llama_server_context(settings.llm_base_url, headers)
    if window is not None:
        log.info("the LLM at %s announces a context window of %s tokens", host, f"{window:,}")
    return settings.with_(model=model, context_tokens=window)


def _models(url: str, headers: dict[str, str], host: str, wait_s: float) -> requests.Response:
    """GET /models; while the server answers 503 (llama.cpp says "Loading model" until its model is in memory),
    ask again each second for up to `wait_s`, so a run started beside its server does not fail on that."""
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        resp = requests.get(url, headers=headers, timeout=(5, 15))
        if resp.status_code != 503 or time.monotonic() >= deadline:
            return resp
        if not told:
            log.warning("the LLM at %s is not ready (HTTP 503: %s); waiting up to %.0f s", host,
                        " ".join(resp.text.split())[:120], wait_s)
            told = True
        time.sleep(1.0)


def pick_model(settings: Settings, served: list[str], host: str) -> str:
    """--model when the server has it (or lists nothing); else, with no --model given, the first it lists."""
    if not served or settings.model in served:
        return settings.model
    if settings.model_given:
        shown = ", ".join(served[:10]) + (f" and {len(served) - 10} more" if len(served) > 10 else "")
        raise LLMError(f"the LLM at {host} has no model {settings.model!r}; it serves: {shown} (use --model)")
    if not settings.llm_base_url:  # OpenAI itself lists every model it has: keep the default
        return settings.model
    log.warning("no --model given: using %r, the first model %s lists", served[0], host)
    return served[0]


# how servers name a model's window in /v1/models: vLLM, OpenRouter and others, LM Studio, llama-server's meta
_CONTEXT_KEYS = ("max_model_len", "loaded_context_length", "context_length", "context_window", "max_context_length")


def announced_context(entry: dict) -> int | None:
    """The context window a /v1/models entry announces, if it does."""
    for where in (entry, entry.get("meta") if isinstance(entry.get("meta"), dict) else {}):
        for key in (*_CONTEXT_KEYS, "n_ctx"):
            value = where.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= MIN_CONTEXT_TOKENS:
                return value
    return None


def _llama_server_context(base_url: str, headers: dict[str, str]) -> int | None:
    """llama.cpp's server tells its window (per slot) at /props, beside /v1."""
    root = base_url.rstrip("/").removesuffix("/v1")
    try:
        resp = requests.get(root + "/props", headers=headers, timeout=(5, 10))
        props = resp.json() if resp.ok else {}
    except (requests.RequestException, ValueError):
        return None
    if not isinstance(props, dict):
        return None
    slot = props.get("default_generation_settings")
    return (announced_context(slot) if isinstance(slot, dict) else None) or announced_context(props)


def _entries(resp: requests.Response) -> list[dict]:
    try:
        data = resp.json().get("data")
    except (ValueError, AttributeError):
        return []
    if not isinstance(data, list):
        return []
    return [item for item in data if isinstance(item, dict) and item.get("id")]
