"""Deterministic prompt-derived answers (JSON-Schema values, text) for the LLM simulator."""

from __future__ import annotations

import hashlib
import logging
import math
import json
import random
import re
from collections.abc import Iterable
from typing import Any


__all__ = [
    "extract_words",
    "fill_schema",
    "find_prompt_schema",
    "make_sentence",
    "stable_seed",
]

logger = logging.getLogger(__name__)

_MAX_DEPTH = 8
_DEFAULT_ITEMS = 3
_WORD_RE = re.compile(r"[^\W\d_][^\W_]*(?:['_-][^\W_]+)*")
_STOPWORDS = frozenset(
    "a an and are as at be but by for from has have in into is it its of on or that the this to was "
    "were will with you your we our they their not can may should would".split()
)
_FALLBACK_WORDS = (
    "documentation page section concept example configuration reference guide "
    "overview usage parameter option feature module"
).split()
_FENCE_RE = re.compile(r"```json[ \t]*\r?\n(.*?)\r?\n?[ \t]*```", re.DOTALL)
_SCHEMA_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
_SENTENCE_HINTS = ("description", "summary", "explanation", "detail", "text", "content", "reason", "answer")


def stable_seed(*parts: str) -> int:
    """Return a process-independent integer seed derived from `parts`."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def extract_words(text: str) -> list[str]:
    """Return all words of `text` in order (falls back to a fixed vocabulary)."""
    words = _WORD_RE.findall(text or "")
    return words or list(_FALLBACK_WORDS)


def _keywords(words: list[str]) -> list[str]:
    """Return distinct non-stopword words, preserving first-seen order."""
    seen: dict[str, None] = {}
    for word in words:
        if word.lower() not in _STOPWORDS and len(word) > 1:
            seen.setdefault(word, None)
    return list(seen) or list(_FALLBACK_WORDS)


def make_sentence(words: list[str], rng: random.Random, lo: int = 10, hi: int = 20) -> str:
    """Build a sentence from a contiguous window of `words`."""
    count = rng.randint(lo, hi)
    start = rng.randrange(len(words))
    picked = [words[(start + i) % len(words)] for i in range(count)]
    sentence = " ".join(picked)
    return sentence[:1].upper() + sentence[1:] + "."


def _slug(words: list[str], rng: random.Random) -> str:
    """Return one lowercase alphanumeric word."""
    return re.sub(r"[^a-z0-9]", "", rng.choice(words).lower()) or "docs"


def _phrase(keywords: list[str], rng: random.Random) -> str:
    """Build a short phrase of 3-6 keywords."""
    return " ".join(rng.choice(keywords) for _ in range(rng.randint(3, 6)))


class _Filler:
    """Walks a schema and produces a matching value."""

    def __init__(self, root: dict[str, Any], text: str) -> None:
        self.root = root
        self.text = text
        self.words = extract_words(text)
        self.keywords = _keywords(self.words)

    def rng(self, path: str) -> random.Random:
        """Return the RNG for one JSON path."""
        return random.Random(stable_seed(self.text, path))

    def resolve(self, schema: dict[str, Any], seen: tuple[str, ...] = ()) -> dict[str, Any]:
        """Follow `$ref` (local JSON pointers only) and merge sibling keywords."""
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#") or ref in seen:
            return schema
        target: Any = self.root
        for token in ref[1:].split("/"):
            if not token:
                continue
            token = token.replace("~1", "/").replace("~0", "~")
            target = target.get(token, {}) if isinstance(target, dict) else {}
        if not isinstance(target, dict):
            target = {}
        merged = {**self.resolve(target, (*seen, ref)), **{k: v for k, v in schema.items() if k != "$ref"}}
        return merged

    def merge_all_of(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Flatten `allOf` into a single schema."""
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema.get("allOf") or []:
            part = self.resolve(part) if isinstance(part, dict) else {}
            part = self.merge_all_of(part) if "allOf" in part else part
            for key, value in part.items():
                if key == "properties" and isinstance(value, dict):
                    merged["properties"] = {**value, **merged.get("properties", {})}
                elif key == "required" and isinstance(value, list):
                    merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
                else:
                    merged.setdefault(key, value)
        return merged

    def fill(self, schema: Any, path: str, depth: int, refs: tuple[str, ...] = ()) -> Any:
        """Return a value valid for `schema` at JSON path `path`."""
        if schema is True or not isinstance(schema, dict):
            return self.string({}, path)
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if ref in refs:  # recursive model: keep the rest of this branch minimal
                depth = max(depth, _MAX_DEPTH + 1)
            refs = (*refs, ref)
        schema = self.resolve(schema)
        if "allOf" in schema:
            schema = self.merge_all_of(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.rng(path).choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                return self.fill(self.pick_option(options, depth), path, depth, refs)
        kind = self.type_of(schema, depth)
        handler = getattr(self, kind, None) if kind in _KINDS else None
        if handler is None:
            return self.string(schema, path)
        if kind in ("object", "array"):
            return handler(schema, path, depth, refs)
        return handler(schema, path)

    def pick_option(self, options: list[Any], depth: int) -> Any:
        """Choose the first non-null option (or null when the tree gets too deep)."""
        non_null = [o for o in options if not (isinstance(o, dict) and self.resolve(o).get("type") == "null")]
        if depth > _MAX_DEPTH and len(non_null) < len(options):
            return {"type": "null"}
        return (non_null or options)[0]

    def type_of(self, schema: dict[str, Any], depth: int) -> str:
        """Return the JSON type to generate for `schema`."""
        kind = schema.get("type")
        if isinstance(kind, list):
            non_null = [k for k in kind if k != "null"]
            if depth > _MAX_DEPTH and "null" in kind:
                return "null"
            kind = non_null[0] if non_null else "null"
        if isinstance(kind, str):
            return kind
        if "properties" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        return "string"

    def object(self, schema: dict[str, Any], path: str, depth: int, refs: tuple[str, ...]) -> dict[str, Any]:
        """Fill every declared property (only required ones when too deep)."""
        props = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        result: dict[str, Any] = {}
        for name, sub in props.items():
            if depth > _MAX_DEPTH and name not in required:
                continue
            result[name] = self.fill(sub, f"{path}.{name}", depth + 1, refs)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and not props and depth <= _MAX_DEPTH:
            rng = self.rng(path + "{}")
            for index in range(max(int(schema.get("minProperties", 0) or 0), 1)):
                key = f"{_slug(self.keywords, rng)}_{index}" if index else _slug(self.keywords, rng)
                result[key] = self.fill(extra, f"{path}.{key}", depth + 1, refs)
        return result

    def array(self, schema: dict[str, Any], path: str, depth: int, refs: tuple[str, ...]) -> list[Any]:
        """Fill an array with the default item count clamped to minItems/maxItems."""
        low = int(schema.get("minItems", 0) or 0)
        high = schema.get("maxItems")
        count = low if depth > _MAX_DEPTH else max(low, _DEFAULT_ITEMS)
        if isinstance(high, int):
            count = min(count, high)
        prefix = schema.get("prefixItems") or []
        items = schema.get("items", {})
        if prefix and items is False:
            count = min(max(count, len(prefix)), len(prefix))
        elif prefix:
            count = max(count, len(prefix))
        values = []
        for index in range(count):
            sub = prefix[index] if index < len(prefix) else items
            values.append(self.fill(sub if isinstance(sub, dict) else {}, f"{path}[{index}]", depth + 1, refs))
        return values

    def string(self, schema: dict[str, Any], path: str) -> str:
        """Build a string from prompt words, honouring format and length bounds."""
        rng = self.rng(path)
        fmt = schema.get("format")
        field = path.rsplit(".", 1)[-1].split("[", 1)[0].lower()
        if fmt in _FORMATS:
            value = _FORMATS[fmt](rng, self.keywords)
        elif any(hint in field for hint in _SENTENCE_HINTS):
            value = make_sentence(self.words, rng)
        else:
            value = _phrase(self.keywords, rng)
        low = int(schema.get("minLength", 0) or 0)
        high = schema.get("maxLength")
        while len(value) < low:
            value = f"{value} {rng.choice(self.keywords)}"
        if isinstance(high, int) and len(value) > high:
            value = value[:high].rstrip() if len(value[:high].rstrip()) >= low else value[:high]
        return value

    def integer(self, schema: dict[str, Any], path: str) -> int:
        """Pick an integer within the (exclusive) bounds and multipleOf."""
        low, high = _bounds(schema, integer=True)
        step = schema.get("multipleOf")
        if isinstance(step, int) and not isinstance(step, bool) and step > 0:
            choices = range(-(-low // step) * step, high + 1, step)
            if choices:
                return self.rng(path).choice(choices)
        return self.rng(path).randint(low, high)

    def number(self, schema: dict[str, Any], path: str) -> float:
        """Pick a number within the (exclusive) bounds, rounded to two decimals."""
        low, high = _bounds(schema, integer=False)
        value = round(self.rng(path).uniform(low, high), 2)
        return min(max(value, low), high)

    def boolean(self, schema: dict[str, Any], path: str) -> bool:
        """Pick a boolean."""
        return self.rng(path).random() < 0.5

    def null(self, schema: dict[str, Any], path: str) -> None:
        """Return null."""
        return None


_KINDS = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})


def _bounds(schema: dict[str, Any], *, integer: bool) -> tuple[Any, Any]:
    """Return inclusive (low, high) bounds for a numeric schema."""
    eps = 1 if integer else 0.01
    low = schema.get("minimum")
    high = schema.get("maximum")
    if isinstance(schema.get("exclusiveMinimum"), (int, float)) and not isinstance(schema["exclusiveMinimum"], bool):
        low = schema["exclusiveMinimum"] + eps if low is None else max(low, schema["exclusiveMinimum"] + eps)
    if isinstance(schema.get("exclusiveMaximum"), (int, float)) and not isinstance(schema["exclusiveMaximum"], bool):
        high = schema["exclusiveMaximum"] - eps if high is None else min(high, schema["exclusiveMaximum"] - eps)
    if low is None and high is None:
        low, high = 1, 100
    elif low is None:
        low = high - 10
    elif high is None:
        high = low + 10
    if integer:
        low, high = math.ceil(low), math.floor(high)
    if high < low:
        high = low
    return low, high


_FORMATS: dict[str, Any] = {
    "date-time": lambda rng, _w: f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00Z",
    "date": lambda rng, _w: f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    "time": lambda rng, _w: f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00",
    "uri": lambda rng, w: f"https://docs.example.com/{_slug(w, rng)}",
    "url": lambda rng, w: f"https://docs.example.com/{_slug(w, rng)}",
    "email": lambda rng, w: f"{_slug(w, rng)}@example.com",
    "uuid": lambda rng, _w: "%08x-%04x-4%03x-8%03x-%012x"
    % (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12), rng.getrandbits(12), rng.getrandbits(48)),
}


def fill_schema(schema: dict[str, Any], *, text: str) -> Any:
    """Return a deterministic value valid for `schema`, built from the words of `text`."""
    return _Filler(schema, text).fill(schema, "$", 0)


def _looks_like_schema(value: Any) -> bool:
    """Return True when a parsed JSON value looks like a JSON Schema object."""
    if not isinstance(value, dict):
        return False
    kind = value.get("type")
    typed = kind in _SCHEMA_TYPES if isinstance(kind, str) else isinstance(kind, list)
    return isinstance(value.get("properties"), dict) or isinstance(value.get("$defs"), dict) or typed


def find_prompt_schema(texts: Iterable[str]) -> dict[str, Any] | None:
    """Return the last ```json fenced block in `texts` that parses as a JSON Schema object."""
    found: dict[str, Any] | None = None
    for text in texts:
        for block in _FENCE_RE.findall(text or ""):
            try:
                value = json.loads(block)
            except ValueError:
                continue
            if _looks_like_schema(value):
                found = value
    return found
