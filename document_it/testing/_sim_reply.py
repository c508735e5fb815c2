"""The simulator's replies: which output a request asks for (tool call, JSON schema, JSON mode, text)."""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

from document_it.testing._schema_fill import extract_words, fill_schema, find_prompt_schema, make_sentence, stable_seed
from document_it.testing._sim_faults import ApiError

__all__ = ["build_message", "content_text", "last_user_text", "plain_answer", "prompt_text", "answer"]

# document-it's batched prompt: instructions, this note, then <item id="…"> blocks (see analysis/prompts.py)
_BATCH_MARK = "\n\nAnswer each item below alone"
_ITEM_RE = re.compile(r'\n\n<item id="([^"]*)">\n(.*?)\n</item>', re.DOTALL)


def answer(schema: dict[str, Any], user: str, imperfect: float = 0.0) -> Any:
    """A value for `schema`; a batched prompt gets each item answered exactly as if it came alone, except that
    a share `imperfect` of batches (decided by the prompt, so a retry of the same batch fares the same) has
    one item left out or answered with something that is not its schema, as real models sometimes do."""
    result = _batch_result_schema(schema) if _BATCH_MARK in user else None
    if result is None:
        return fill_schema(schema, text=user)
    instruction = user.split(_BATCH_MARK, 1)[0]
    items = [{"id": item_id, "result": fill_schema(result, text=f"{instruction}\n\n{material}")}
             for item_id, material in _ITEM_RE.findall(user)]
    rng = random.Random(stable_seed(user, "$imperfect"))
    if len(items) > 1 and rng.random() < imperfect:
        victim = rng.randrange(len(items))
        if rng.random() < 0.5:
            del items[victim]  # left out
        else:
            items[victim] = {"id": items[victim]["id"], "result": "(no answer)"}  # malformed: not an object
    return {"results": items}


def _batch_result_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The per-item `result` schema of a {"results": [{"id", "result"}]} schema, with its definitions."""
    defs = schema.get("$defs") or schema.get("definitions") or {}

    def deref(node: Any) -> Any:
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            node = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
        return node

    results = deref((deref(schema).get("properties") or {}).get("results"))
    item = deref((results or {}).get("items")) if isinstance(results, dict) else None
    props = (item or {}).get("properties") if isinstance(item, dict) else None
    if not isinstance(props, dict) or "id" not in props or "result" not in props:
        return None
    return {**props["result"], "$defs": defs}


def content_text(content: Any) -> str:
    """Return the text of a message content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """Return the content of the last user message (or of the last message)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return content_text(messages[-1].get("content"))


_ONE_WORD = re.compile(r"\banswer (?:with )?(?:exactly )?(?:one word[,:]?\s+)?[\"']?(\w+)[\"']?\s+or\s+[\"']?(\w+)",
                       re.I)


_JSON_KEYS = re.compile(r"\bJSON\b[^\n]*?\b(?:with|keys|fields)\b:?\s*((?:\w+[,\s]+(?:and\s+)?)*\w+)", re.I)


def plain_answer(user: str) -> str:
    """Return a short deterministic text answer built from the user's words; a prompt that asks for one of
    two words ('answer with one word, yes or no') gets one of them."""
    rng = random.Random(stable_seed(user, "$text"))
    choice = _ONE_WORD.search(user)
    if choice:
        return rng.choice(choice.groups())
    keys = _JSON_KEYS.search(user)
    if keys:  # 'Return JSON with name, version, license': an object with those keys, as a model would give
        words = extract_words(user)
        fields = [k for k in re.split(r"[,\s]+(?:and\s+)?", keys.group(1)) if k]
        return _dumps({field: make_sentence(words, rng, 1, 3) for field in fields[:20]})
    return make_sentence(extract_words(user), rng, 8, 16)


def prompt_text(body: dict[str, Any]) -> str:
    """Return all prompt text (messages, tool-call arguments, schemas) for token counting."""
    parts: list[str] = []
    for message in body["messages"]:
        parts.append(content_text(message.get("content")))
        for call in message.get("tool_calls") or []:
            parts.append(json.dumps(call.get("function", {})))
    for key in ("tools", "response_format"):
        if body.get(key):
            parts.append(json.dumps(body[key]))
    return "\n".join(p for p in parts if p)


def _pick_tool(tools: list[Any], choice: Any) -> dict[str, Any]:
    """Return the function spec named by `tool_choice`, else the first tool."""
    functions = [t.get("function") for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    if not functions:
        raise ApiError(400, "tools must contain at least one function", param="tools")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        for function in functions:
            if function.get("name") == name:
                return function
        raise ApiError(400, f"tool_choice names an unknown function: {name!r}", param="tool_choice")
    return functions[0]


def _dumps(value: Any) -> str:
    """Serialise compactly and deterministically, the way models emit JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def build_message(body: dict[str, Any], imperfect: float = 0.0) -> tuple[dict[str, Any], str, str]:
    """Return (assistant message, finish_reason, generated text) for a validated chat request body
    (`imperfect`: the share of batched answers with one item wrong, see answer())."""
    messages = body["messages"]
    user = last_user_text(messages)
    tools = body.get("tools")
    choice = body.get("tool_choice")
    fmt = body.get("response_format") if isinstance(body.get("response_format"), dict) else {}
    if isinstance(tools, list) and tools and choice != "none":
        function = _pick_tool(tools, choice)
        args = _dumps(answer(function.get("parameters") or {"type": "object"}, user, imperfect))
        call_id = "call_" + hashlib.sha256(f"{user}\x1f{args}".encode()).hexdigest()[:24]
        call = {"id": call_id, "type": "function", "function": {"name": function.get("name", ""), "arguments": args}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls", args
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        if not isinstance(spec.get("schema"), dict):
            raise ApiError(400, "response_format.json_schema.schema must be an object", param="response_format")
        content = _dumps(answer(spec["schema"], user, imperfect))
    elif fmt.get("type") == "json_object":
        schema = find_prompt_schema(content_text(m.get("content")) for m in messages)
        value = answer(schema, user, imperfect) if schema else {"answer": plain_answer(user)}
        content = _dumps(value)
    else:
        content = plain_answer(user)
    return {"role": "assistant", "content": content, "refusal": None}, "stop", content
