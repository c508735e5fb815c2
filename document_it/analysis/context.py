"""The model's context window: how many tokens a request may hold (prompt + room for the answer), and what
a "context length exceeded" refusal teaches about it.

Token counts here are estimates (about four characters a token, no tokenizer files), so the prompt side is
weighed by `scale`, the server's tokens per estimated token: 1.2 at first (code and non-English text take
more tokens than prose), lowered when replies count fewer (their usage: `observe`), raised when a refusal says
how many tokens the prompt really had. A refusal that
names the server's window (vLLM, llama-cpp-python and OpenAI all say "maximum context length is N") sets
it; one that says nothing raises the scale by a third. Either way the budgets shrink and the request is
built again to fit; only a request built under the old belief teaches anything, so twenty refusals of one
burst shrink the budget once. What was learned is remembered per server and model in the state dir
(context_window.json), so the next run starts from it.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from ..core.state_file import read_state, write_state
from ..errors import LLMError

__all__ = ["STORE_NAME", "ContextWindow", "LLMContextError", "DEFAULT_CONTEXT_TOKENS", "ANSWER_TOKENS",
           "is_context_error", "MIN_CONTEXT_TOKENS"]

STORE_NAME = "context_window.json"  # in the state dir: what refusals taught, per server and model

log = logging.getLogger(__name__)

DEFAULT_CONTEXT_TOKENS = 8192  # when neither --context-tokens nor the server says
MIN_CONTEXT_TOKENS = 1024  # below this a prompt holds little more than its instructions and schema
ANSWER_TOKENS = 1024  # room for one answer (every task asks for a bounded answer: at most 8 items)
BATCH_ANSWER_TOKENS = 512  # room per item of a batch (a reply cut short is split in halves and asked again)
START_SCALE = 1.2
MAX_SCALE = 4.0  # no tokenizer counts more than a token a character
MIN_SCALE = 0.75  # the lowest scale replies' usage may teach (tokenizers with large vocabularies, on prose)
USAGE_MARGIN = 1.05  # over the largest ratio replies showed: the next page's text may count a little higher
USAGE_MIN_PROMPT = 200  # estimated tokens below which a prompt says too little about the tokenizer
# a reply teaches the scale only when the part of its prompt a server may leave uncounted (the schema: a
# json_schema response format is a grammar to most servers, tools are in the prompt) is at most a tenth of it,
# so a server that leaves it out shows a ratio at most 10 % low
USAGE_SHARE = 9

_EXCEEDED = re.compile(r"context[ _](length|window|size)|maximum context|too many tokens|prompt is too long|"
                       r"input is too long|exceeds? the (available )?context|reduce the length|n_ctx", re.I)
_WINDOW = (re.compile(r"maximum context length is (\d+)", re.I), re.compile(r"context window of (\d+)", re.I),
           re.compile(r"context length of only (\d+)", re.I), re.compile(r"\"?n_ctx\"?\s*[:=]\s*(\d+)", re.I),
           re.compile(r"max_model_len\"?\s*[:=]?\s*(\d+)", re.I), re.compile(r"context size \(?(\d+)", re.I))
_PROMPT = (re.compile(r"\((\d+) in the messages", re.I), re.compile(r"messages resulted in (\d+) tokens", re.I),
           re.compile(r"request has (\d+) input tokens", re.I),
           re.compile(r"\"?n_prompt_tokens\"?\s*[:=]\s*(\d+)", re.I),
           re.compile(r"requested tokens \((\d+)\)", re.I), re.compile(r"prompt has (\d+) tokens", re.I))


class LLMContextError(LLMError):
    """The server refused a request as longer than its context window; the window has learned from it."""

    def __init__(self, message: str, *, shrunk: bool, resend: bool = False) -> None:
        super().__init__(message)
        self.shrunk = shrunk  # True when a request built again now would be smaller
        self.resend = resend  # True when the same prompt fits as it is (only its answer limit was too large)


def is_context_error(status: int, text: str) -> bool:
    """True when an error reply says the request was longer than the model's context window."""
    return status in (400, 413, 422, 500) and bool(_EXCEEDED.search(text))


class ContextWindow:
    """What one model's requests may hold: prompt tokens (as estimated, times `scale`) plus answer room."""

    def __init__(self, tokens: int | None = None, store: Path | None = None, server: str = "") -> None:
        """`tokens`: given or announced (else what an earlier run learned, else 8192); `store` remembers per
        `server` what refusals taught, so the next run starts from it."""
        self._store, self._server = store, server
        remembered = read_state(store).get(server)
        remembered = remembered if isinstance(remembered, dict) else {}
        learned_tokens, learned_scale = remembered.get("tokens"), remembered.get("scale")
        self.known = tokens is not None  # given or announced, or learned (now or by an earlier run)
        if tokens is None and isinstance(learned_tokens, int) and learned_tokens >= MIN_CONTEXT_TOKENS:
            tokens, self.known = learned_tokens, True
        self.tokens = max(MIN_CONTEXT_TOKENS, int(tokens or DEFAULT_CONTEXT_TOKENS))
        # the scale is a refusal's lesson (now or remembered): usage never lowers it
        self._taught = remembered.get("taught") is True or (isinstance(learned_scale, (int, float))
                                                             and learned_scale > START_SCALE)
        low = MIN_SCALE if self._taught else START_SCALE
        valid = isinstance(learned_scale, (int, float)) and low <= learned_scale <= MAX_SCALE
        self.scale = float(learned_scale) if valid else START_SCALE
        self._taught = self._taught and valid
        self.learned = 0  # refusals that shrank the budget
        self.refusals = 0
        self.counted = False  # a reply's usage has said how the server counts our prompts
        self._seen = 0.0  # the largest ratio of counted to estimated prompt tokens a reply showed

    def observe(self, prompt_estimate: int, prompt_tokens: int, uncertain: int = 0) -> None:
        """A reply's usage: the server counted `prompt_tokens` for a prompt estimated at `prompt_estimate`, of
        which `uncertain` (the schema) a server may or may not count. Until a refusal teaches otherwise, the
        scale follows the largest ratio replies showed, with a margin, never above where it started: an
        estimate that counts high no longer cuts pages that fit, and one that counts low is left to the
        refusals. A prompt mostly uncertain says little; a ratio under what any tokenizer gives (a server that
        truncates, or leaves cached tokens out) is ignored; a fall of under 5 % is ignored too (work sized for
        the window is redone when it changes), a rise never."""
        if (prompt_estimate < USAGE_MIN_PROMPT or prompt_tokens <= 0 or self._taught
                or prompt_estimate - uncertain < USAGE_SHARE * uncertain):
            return
        ratio = prompt_tokens / prompt_estimate
        if ratio * USAGE_MARGIN < MIN_SCALE:
            return
        self.counted = True
        self._seen = max(self._seen, ratio)
        scale = min(START_SCALE, self._seen * USAGE_MARGIN)
        if scale > self.scale or scale < 0.95 * self.scale:
            log.info("the LLM counts %.2f tokens per estimated token: prompts are now sized for %.2f",
                     self._seen, scale)
            self.scale = scale

    def answer_room(self, answers: int = 1, each: int = ANSWER_TOKENS) -> int:
        """The output tokens reserved for `answers` answers of about `each` tokens (a batch reserves half as
        much per item as one answer alone); a small window keeps at least 5/8 of itself for the prompt."""
        if answers <= 1:
            return min(each, max(256, self.tokens * 3 // 8))
        return max(BATCH_ANSWER_TOKENS, each // 2) * answers

    def prompt_room(self, answers: int = 1, each: int = ANSWER_TOKENS, scale: float | None = None) -> int:
        """The estimated prompt tokens that fit beside the answer room of `answers` answers (at `scale` when
        given: what would fit were the server to count that way)."""
        return max(0, math.floor((self.tokens - self.answer_room(answers, each)) / (scale or self.scale)))

    def may_grow(self) -> bool:
        """True while a reply's usage could still lower the scale, so more would fit than now."""
        return not self.counted and not self._taught and self.scale > MIN_SCALE

    def fits(self, prompt_estimate: int, answers: int = 1, each: int = ANSWER_TOKENS) -> bool:
        """True when a prompt of `prompt_estimate` estimated tokens fits with room for `answers` answers."""
        return prompt_estimate <= self.prompt_room(answers, each)

    def holds(self, prompt_estimate: int) -> bool:
        """False when a window we know cannot hold even this prompt and a short answer (no use sending it)."""
        return not self.known or prompt_estimate * self.scale + 16 <= self.tokens

    def max_tokens(self, prompt_estimate: int) -> int:
        """The answer limit to send with a prompt: all the room the window leaves it (at least 16)."""
        return max(16, self.tokens - math.ceil(prompt_estimate * self.scale))

    def learn(self, reply: str, prompt_estimate: int, sent_max_tokens: int) -> bool:
        """Take in a context-length refusal of a request of `prompt_estimate` estimated prompt tokens sent with
        `sent_max_tokens`; True when the budget now builds a smaller request than the refused one."""
        self.refusals += 1
        if prompt_estimate * self.scale + sent_max_tokens <= self.tokens:  # built under the old belief
            window, real = _number(_WINDOW, reply), _number(_PROMPT, reply)
            before = (self.tokens, self.scale)
            if window and MIN_CONTEXT_TOKENS <= window < self.tokens:
                self.tokens, self.known = window, True
            if real and prompt_estimate:
                self.scale = min(MAX_SCALE, max(self.scale, real / prompt_estimate * 1.05))
            if (self.tokens, self.scale) == before:
                self.scale = min(MAX_SCALE, self.scale * 4 / 3)  # the reply said nothing we can use
            self.learned += 1
            self._taught = self._taught or self.scale > before[1]
            self._remember()
            log.warning("the LLM refused a request as longer than its context: now %s tokens, %.2f tokens per "
                        "estimated token", f"{self.tokens:,}", self.scale)
        # the refused request would not be sent as it was: a smaller answer limit, or a smaller prompt
        return self.prompt_room() >= 128 and prompt_estimate * self.scale + sent_max_tokens > self.tokens

    def _remember(self) -> None:
        if self._store is None:
            return
        try:
            write_state(self._store, {**read_state(self._store),
                                      self._server: {"tokens": self.tokens, "scale": round(self.scale, 3),
                                                     "taught": self._taught}})
        except OSError as exc:  # remembering is an optimisation; the run goes on
            log.info("could not remember the context window: %s", exc)

    def summary(self) -> dict[str, object]:
        """The `context` block of run.json's llm figures."""
        return {"tokens": self.tokens, "scale": round(self.scale, 3), "prompt_room": self.prompt_room(),
                "refusals": self.refusals, "learned": self.learned,
                "counted": round(self._seen, 3) if self.counted else None}  # replies' tokens per estimated one


def _number(patterns: tuple[re.Pattern[str], ...], text: str) -> int | None:
    for pattern in patterns:
        found = pattern.search(text)
        if found:
            return int(found.group(1))
    return None

