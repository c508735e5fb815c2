"""Content moderation by parallel voting: toxicity, adult-content and spam checks run at once, and a custom
combiner turns their weighted votes into a verdict with a reason.

    python -m examples.content_moderation "Buy cheap watches now!!! Click here"
    python -m examples.content_moderation --llm simulate "Some text"      # no key: the built-in simulator
    OPENAI_API_KEY=... python -m examples.content_moderation --model gpt-4o-mini "Some text"
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Any

import document_it
from document_it.errors import DocumentItError

ASK = ("You are a content moderator. {question} Answer with exactly one word, yes or no.\n\n"
       "Text:\n<<<\n{text}\n>>>")
CHECKS = [  # (name, question, weight): a toxic text matters more than a spammy one
    ("toxicity", "Is this text insulting, hateful or threatening?", 2.0),
    ("adult", "Is this text sexually explicit or otherwise adult-only?", 1.5),
    ("spam", "Is this text unsolicited advertising or spam?", 1.0),
]
BLOCK_AT = 1.5  # summed weight of the checks that flag the text


def yes_no(reply: str) -> str:
    """'flagged' when the model said yes, 'ok' when it said no, 'unclear' otherwise."""
    words = re.findall(r"[a-z]+", reply.lower())
    if "yes" in words[:3]:
        return "flagged"
    if "no" in words[:3]:
        return "ok"
    return "unclear"


def verdict(results: dict[str, Any]) -> str:
    """The custom combiner: block, review or allow, and which checks said so."""
    flagged = [(name, r.weight) for name, r in results.items() if r.ok and r.output == "flagged"]
    unclear = [name for name, r in results.items() if not r.ok or r.output == "unclear"]
    weight = sum(w for _, w in flagged)
    reasons = ", ".join(f"{name} (weight {w:g})" for name, w in flagged) or "no check flagged it"
    if weight >= BLOCK_AT:
        return f"block: {reasons}"
    if flagged or unclear:
        more = f"; unclear: {', '.join(unclear)}" if unclear else ""
        return f"review: {reasons}{more}"
    return "allow: no check flagged it"


def build(llm: Any) -> Any:
    builder = document_it.ParallelizerBuilder()
    for name, question, weight in CHECKS:
        template = ASK.replace("{question}", question)
        builder.add_task(document_it.ParallelTask(name, template, weight=weight, parser=yes_no))
    return builder.set_voting_strategy("custom", custom_combiner=verdict).build(llm)


async def moderate(text: str, llm: Any) -> Any:
    return await build(llm).execute({"text": text})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.content_moderation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", help="the text to moderate")
    parser.add_argument("--llm", choices=["openai", "simulate"], default="openai",
                        help="openai: OPENAI_API_KEY / OPENAI_BASE_URL or --base-url; simulate: built-in simulator")
    parser.add_argument("--base-url", default=None, help="any OpenAI-compatible endpoint")
    parser.add_argument("--model", default=None, help="model name (default: OPENAI_MODEL or gpt-4o-mini)")
    args = parser.parse_args(argv)
    try:
        with document_it.connect_llm(base_url=args.base_url, model=args.model,
                                     simulate=args.llm == "simulate") as llm:
            result = asyncio.run(moderate(args.text, llm))
    except DocumentItError as exc:
        print(f"content_moderation: error: {exc}", file=sys.stderr)
        return 2
    for name, task in result.task_results.items():
        shown = task.output if task.ok else f"failed: {task.error}"
        print(f"  {name:<9} weight {task.weight:<4g} → {shown}")
    print(result.decision)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
