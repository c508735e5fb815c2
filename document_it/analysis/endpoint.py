"""Before any page: is the LLM server there, does it take the key, and which model will answer? Servers
people run themselves list what they serve at /v1/models (often by file path); with no --model given the
first one listed is used, and a --model the server does not have is one clear line naming what it has."""

from __future__ import annotations

import logging
from urllib.parse import urlparse

import requests

from ..config import Settings
from ..errors import LLMAuthError, LLMError, connection_reason

__all__ = ["check_endpoint", "OPENAI_URL"]

log = logging.getLogger(__name__)

OPENAI_URL = "https://api.openai.com/v1"


def check_endpoint(settings: Settings) -> Settings:
    """The settings with the model the server will use; raises LLMError / LLMAuthError for what would
    fail every page. Other answers (a server without /models, say) are left to the run."""
    host = urlparse(settings.llm_base_url or OPENAI_URL).netloc
    url = (settings.llm_base_url or OPENAI_URL).rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    try:
        resp = requests.get(url, headers=headers, timeout=(5, 15))
    except requests.ConnectionError as exc:
        raise LLMError(f"cannot reach the LLM at {host}: {connection_reason(exc)} (check --llm-base-url)") from None
    except requests.RequestException as exc:
        log.info("could not check %s before the run: %s", host, type(exc).__name__)
        return settings
    if resp.status_code == 401:
        raise LLMAuthError(f"API key rejected by {host} (HTTP 401)")
    if resp.status_code == 403:
        raise LLMAuthError(f"API key not allowed at {host} (HTTP 403)")
    served = _model_ids(resp) if resp.ok else []
    return settings.with_(model=pick_model(settings, served, host))


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


def _model_ids(resp: requests.Response) -> list[str]:
    try:
        data = resp.json().get("data")
    except (ValueError, AttributeError):
        return []
    if not isinstance(data, list):
        return []
    return [str(item["id"]) for item in data if isinstance(item, dict) and item.get("id")]
