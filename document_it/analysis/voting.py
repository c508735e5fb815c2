"""How parallel answers become one decision: vote labels, weights, quorum and the four strategies.

Pure functions of the task results (no I/O): `patterns.Parallelizer` runs the tasks, then calls
`tally` here. Answers are compared by their label, `str(value)` trimmed and case-folded.
"""

from __future__ import annotations

import enum
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["VotingStrategy", "TaskResult", "VotingResult", "label", "quorum_met", "tally"]


class VotingStrategy(str, enum.Enum):
    """How the answers of parallel tasks are combined into one decision."""

    MAJORITY = "majority"    # highest summed weight wins; a tie decides nothing
    UNANIMOUS = "unanimous"  # every answering task must agree
    WEIGHTED = "weighted"    # weighted mean of numeric answers, else majority
    CUSTOM = "custom"        # the caller's combiner decides


@dataclass(frozen=True)
class TaskResult:
    """One task's answer (`output`: parsed, or the normalised reply) or why it has none (`error`)."""

    name: str
    output: Any = None
    raw: str | None = None
    error: str | None = None
    weight: float = 1.0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the task answered."""
        return self.error is None


@dataclass(frozen=True)
class VotingResult:
    """The decision (None when there is none), the votes behind it and every task's result."""

    decision: Any
    votes: dict[str, float]               # label -> summed weight of the tasks that answered it
    task_results: dict[str, TaskResult]   # task name -> its result, failures included
    strategy: VotingStrategy
    quorum_met: bool
    confidence: float                     # winning weight / weight of the answering tasks; 0 when none
    explanation: str


def label(value: Any) -> str:
    """The form in which answers are compared: `str(value)`, trimmed and case-folded."""
    return str(value).strip().casefold()


def quorum_met(results: Mapping[str, TaskResult], quorum: int) -> bool:
    """True when at least `quorum` tasks answered."""
    return sum(r.ok for r in results.values()) >= quorum


def tally(results: Mapping[str, TaskResult], strategy: VotingStrategy, quorum: int = 1,
          custom_decision: Any = None) -> VotingResult:
    """Combine `results` with `strategy` (CUSTOM takes the combiner's `custom_decision`); nothing below quorum."""
    quorum = max(1, quorum)
    answered = [r for r in results.values() if r.ok]
    votes: dict[str, float] = {}
    for result in answered:
        votes[label(result.output)] = votes.get(label(result.output), 0.0) + result.weight
    total = sum(r.weight for r in answered)
    failed = len(results) - len(answered)
    note = f"; {failed} of {len(results)} tasks failed" if failed else ""

    def done(decision: Any, confidence: float, explanation: str, met: bool = True) -> VotingResult:
        return VotingResult(decision, votes, dict(results), strategy, met, confidence, explanation + note)

    if len(answered) < quorum:
        return done(None, 0.0, f"quorum not met: {len(answered)} answered, {quorum} needed", met=False)
    if strategy is VotingStrategy.CUSTOM:
        share = votes.get(label(custom_decision), 0.0) / total
        return done(custom_decision, share, f"the custom combiner decided {custom_decision!r}")
    if strategy is VotingStrategy.UNANIMOUS:
        if len(votes) == 1:
            return done(answered[0].output, 1.0, f"all {len(answered)} answering tasks agreed on {next(iter(votes))!r}")
        return done(None, 0.0, "no consensus: " + ", ".join(f"{k!r} (weight {w:g})" for k, w in votes.items()))
    if strategy is VotingStrategy.WEIGHTED:
        values = [_number(r.output) for r in answered]
        if all(v is not None for v in values):
            mean = sum(r.weight * v for r, v in zip(answered, values)) / total  # type: ignore[operator]
            return done(mean, 1.0, f"weighted average {mean:g} of {len(answered)} answers (weight {total:g})")
        decision, confidence, why = _majority(answered, votes, total)
        return done(decision, confidence, f"answers are not all numeric, fell back to majority: {why}")
    return done(*_majority(answered, votes, total))


def _majority(answered: Sequence[TaskResult], votes: dict[str, float], total: float) -> tuple[Any, float, str]:
    """The label with the most weight (its first answer as the decision); a tie decides nothing."""
    top = max(votes.values())
    leaders = [key for key, weight in votes.items() if math.isclose(weight, top)]
    if len(leaders) > 1:
        return None, 0.0, f"tie between {', '.join(map(repr, leaders))} (weight {top:g} each)"
    winners = [r for r in answered if label(r.output) == leaders[0]]
    return (winners[0].output, top / total,
            f"{len(winners)} of {len(answered)} tasks voted {leaders[0]!r} (weight {top:g} of {total:g})")


def _number(value: Any) -> float | None:
    """`value` as a finite float when it is a number or a numeric string (booleans are not numbers here)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None
