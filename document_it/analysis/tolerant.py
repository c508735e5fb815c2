"""Reading the loose JSON small models write: the object inside code fences or prose, keys in another case or
spelling ("Summary", "Key Themes"), a list left out, a number out of range, a list item missing a field
(left out). Used when a reply does not validate as it is, whatever the structured-output method."""

from __future__ import annotations

import json
import re
import types
import typing
from typing import Any

from annotated_types import Ge, Le, MaxLen
from pydantic import BaseModel, ValidationError

__all__ = ["tolerant_parse", "extract_json", "fit", "norm_key"]

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def tolerant_parse(schema: type[BaseModel], text: str) -> BaseModel | None:
    """`text` read as an instance of `schema` as leniently as is safe, or None when it holds no such object."""
    data = extract_json(text)
    if not isinstance(data, dict):
        return None
    try:
        return schema.model_validate(fit(schema, data))
    except ValidationError:
        return None


def extract_json(text: str) -> Any:
    """The first JSON object in `text`: the whole text, a fenced block, or the outermost {...} in prose."""
    candidates = [text.strip(), *(block.strip() for block in _FENCE.findall(text))]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None


def norm_key(key: str) -> str:
    """A key as fit() matches it: "Key Concepts", "key_concepts" and "keyConcepts" are one."""
    return re.sub(r"[^a-z0-9]", "", key.lower())


def fit(schema: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """`data` with keys matched to `schema`'s fields by normalised name, nested values fitted, lists that
    are missing made empty, lists cut to their longest allowed and numbers clamped to the field's bounds."""
    by_norm = {norm_key(key): value for key, value in data.items()}
    fitted: dict[str, Any] = {}
    for name, field in schema.model_fields.items():
        key = norm_key(field.alias or name)
        if key in by_norm:
            value = _fit_value(field.annotation, by_norm[key])
            fitted[name] = _clamp(value, field.metadata)
        elif _is_list(field.annotation) and field.is_required():
            fitted[name] = []
    return fitted


def _fit_value(annotation: Any, value: Any) -> Any:
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
        return fit(annotation, value)
    if origin is list and isinstance(value, list):
        (inner,) = typing.get_args(annotation) or (Any,)
        items = [_fit_value(inner, item) for item in value]
        if isinstance(inner, type) and issubclass(inner, BaseModel):  # an item the model got wrong is left out
            items = [item for item in items if _valid(inner, item)]
        return items
    if origin in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if models and isinstance(value, dict):
            return fit(models[0], value)
    return value


def _valid(model: type[BaseModel], value: Any) -> bool:
    try:
        model.model_validate(value)
    except ValidationError:
        return False
    return True


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


def _clamp(value: Any, metadata: list[Any]) -> Any:
    if isinstance(value, list):
        longest = min((rule.max_length for rule in metadata if isinstance(rule, MaxLen)), default=None)
        return value if longest is None else value[:longest]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    for rule in metadata:
        if isinstance(rule, Ge):
            value = max(value, rule.ge)
        elif isinstance(rule, Le):
            value = min(value, rule.le)
    return value
