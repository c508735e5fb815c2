"""The runnable examples: content moderation by weighted, explained voting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from document_it.analysis.voting import TaskResult
from examples.content_moderation import moderate, verdict, yes_no

ROOT = Path(__file__).resolve().parents[1]


def _results(**answers: str | None) -> dict[str, TaskResult]:
    weights = {"toxicity": 2.0, "adult": 1.5, "spam": 1.0}
    return {name: TaskResult(name, output=answer, weight=weights[name]) if answer is not None
            else TaskResult(name, error="Error: timed out", weight=weights[name]) for name, answer in answers.items()}


@pytest.mark.parametrize(("answers", "expected"), [
    ({"toxicity": "ok", "adult": "ok", "spam": "ok"}, "allow: no check flagged it"),
    ({"toxicity": "flagged", "adult": "ok", "spam": "ok"}, "block: toxicity (weight 2)"),
    ({"toxicity": "ok", "adult": "ok", "spam": "flagged"}, "review: spam (weight 1)"),
    ({"toxicity": "ok", "adult": "flagged", "spam": "flagged"}, "block: adult (weight 1.5), spam (weight 1)"),
    ({"toxicity": "ok", "adult": None, "spam": "ok"}, "review: no check flagged it; unclear: adult"),
])
def test_the_combiner_explains_its_verdict(answers, expected):
    assert verdict(_results(**answers)) == expected


def test_yes_no_reads_the_first_words():
    assert [yes_no(r) for r in ("Yes.", " no", "Maybe, it depends", "YES, clearly")] == \
        ["flagged", "ok", "unclear", "flagged"]


async def test_moderate_runs_the_three_checks_in_parallel():
    seen: list[str] = []

    async def llm(prompt: str) -> str:
        seen.append(prompt)
        return "yes" if "spam" in prompt else "no"

    result = await moderate("Buy cheap watches", llm)

    assert len(seen) == 3 and all("Buy cheap watches" in p for p in seen)
    assert result.decision == "review: spam (weight 1)"


def test_the_example_runs_against_the_simulator(tmp_path):
    done = subprocess.run([sys.executable, "-m", "examples.content_moderation", "--llm", "simulate",
                           "You are an idiot"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                               "DOCUMENT_IT_STATE_DIR": str(tmp_path / "state")})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 4 and lines[-1].split(":")[0] in ("block", "review", "allow")
