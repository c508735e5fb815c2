"""document_it.analysis.patterns as a caller meets it: parallel_query and the voting Parallelizer.

Every llm here is a plain callable or a tiny fake client (no network); nothing asserts on wall-clock time.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest

from document_it.analysis.patterns import (
    ParallelizerBuilder, ParallelTask, TaskResult, VotingStrategy, aparallel_query, parallel_query,
)
from document_it.errors import LLMAuthError, LLMError

from _pattern_fakes import Recorder, echo


# --------------------------------------------------------------------------- parallel_query

async def test_answers_keep_input_order_under_random_latency() -> None:
    rng = random.Random(7)
    delays = {f"chunk {i}": rng.uniform(0, 0.01) for i in range(30)}

    async def slow(prompt: str) -> str:
        await asyncio.sleep(delays[prompt.removeprefix("Q: ")])
        return prompt.upper()

    chunks = list(delays)
    assert await aparallel_query("Q: {chunk}", chunks, llm=slow, max_parallel=7) == [f"Q: {c}".upper() for c in chunks]


async def test_a_failed_chunk_becomes_an_error_string_in_its_slot() -> None:
    async def flaky(prompt: str) -> Any:
        if "llm" in prompt:
            raise LLMError("the model refused the prompt")
        if "bug" in prompt:
            raise ValueError("boom")
        if "number" in prompt:
            return 42
        return "fine"

    answers = await aparallel_query("{chunk}", ["ok", "llm", "bug", "number", "ok"], llm=flaky)
    assert answers == ["fine", "Error: the model refused the prompt", "Error: ValueError: boom",
                       "Error: the llm returned int, not text", "fine"]


async def test_error_strings_hide_anything_shaped_like_an_api_key() -> None:
    async def leaky(prompt: str) -> str:
        raise RuntimeError("bad key sk-abcdef1234567890")

    [answer] = await aparallel_query("{chunk}", ["x"], llm=leaky)
    assert answer.startswith("Error: ") and "sk-abcdef" not in answer


@pytest.mark.parametrize("cap, chunks", [(1, 5), (4, 20), (10, 3)])
async def test_never_more_than_max_parallel_calls_in_flight(cap: int, chunks: int) -> None:
    in_flight, peak = 0, 0

    async def counting(prompt: str) -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(3):
            await asyncio.sleep(0)  # yield, so every call the cap allows is in flight together
        in_flight -= 1
        return prompt

    answers = await aparallel_query("{chunk}", [str(i) for i in range(chunks)], llm=counting, max_parallel=cap)
    assert answers == [str(i) for i in range(chunks)]
    assert peak == min(cap, chunks)


async def test_braces_in_template_and_chunks_are_left_alone() -> None:
    template = 'Reply as {"summary": "..."} for: {chunk}'
    assert await aparallel_query(template, ["def f(): return {x}"], llm=echo) == [
        'answer to Reply as {"summary": "..."} for: def f(): return {x}']


@pytest.mark.parametrize("template, cap, message", [
    ("no placeholder", 10, "{chunk}"), ("{chunk}", 0, "max_parallel"), ("{chunk}", 2.5, "max_parallel")])
async def test_bad_arguments_are_refused_before_any_call(template: str, cap: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await aparallel_query(template, ["a"], llm=echo, max_parallel=cap)


def test_every_kind_of_llm_is_accepted() -> None:
    class Client:
        def query(self, prompt: str) -> str:
            raise AssertionError("the async method is preferred")

        async def query_async(self, prompt: str) -> str:
            return f"client: {prompt}"

    def sync_llm(prompt: str) -> str:
        return f"sync: {prompt}"

    assert parallel_query("{chunk}", ["a"], llm=Client()) == ["client: a"]
    assert parallel_query("{chunk}", ["a"], llm=echo) == ["answer to a"]
    assert parallel_query("{chunk}", ["a"], llm=sync_llm) == ["sync: a"]
    assert parallel_query("{chunk}", ["a"], llm=lambda p: echo(p)) == ["answer to a"]
    with pytest.raises(TypeError, match="query_async"):
        parallel_query("{chunk}", ["a"], llm=42)


def test_parallel_query_from_sync_code() -> None:
    assert parallel_query("Q {chunk}", ["a", "b", "c"], llm=echo, max_parallel=2) == [
        "answer to Q a", "answer to Q b", "answer to Q c"]


async def test_parallel_query_from_inside_a_running_loop() -> None:
    running = asyncio.get_running_loop()
    seen_loops = []

    async def llm(prompt: str) -> str:
        seen_loops.append(asyncio.get_running_loop())
        return prompt

    assert parallel_query("{chunk}", ["a", "b"], llm=llm) == ["a", "b"]
    assert seen_loops and all(loop is not running for loop in seen_loops)


def test_without_an_llm_the_configured_client_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    class Client:
        async def query_async(self, prompt: str) -> str:
            return f"configured: {prompt}"

    monkeypatch.setattr("document_it.connect_llm", lambda: Client(), raising=False)
    assert parallel_query("{chunk}", ["a", "b"]) == ["configured: a", "configured: b"]


async def test_parallel_query_reports_progress_and_survives_a_raising_callback(caplog) -> None:
    async def llm(prompt: str) -> str:
        if prompt == "bad":
            raise LLMError("no answer")
        return prompt

    recorder = Recorder()
    assert await aparallel_query("{chunk}", ["a", "bad", "c"], llm=llm, **recorder.kwargs()) == [
        "a", "Error: no answer", "c"]
    assert set(recorder.of("start")) == {0, 1, 2}
    assert recorder.of("result") == {0: "a", 2: "c"}
    assert recorder.of("error") == {1: "Error: no answer"}

    def explode(*args: Any) -> None:
        raise RuntimeError("callback bug")

    with caplog.at_level(logging.WARNING, logger="document_it.analysis.patterns"):
        answers = await aparallel_query("{chunk}", ["a", "b"], llm=echo, on_start=explode, on_result=explode)
    assert answers == ["answer to a", "answer to b"]
    assert "callback" in caplog.text


async def test_no_chunks_no_calls_and_cancellation_is_never_swallowed() -> None:
    assert await aparallel_query("{chunk}", [], llm=echo) == []
    started = asyncio.Event()

    async def hang(prompt: str) -> str:
        started.set()
        await asyncio.Event().wait()
        return prompt

    task = asyncio.ensure_future(aparallel_query("{chunk}", ["a", "b"], llm=hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --------------------------------------------------------------------------- voting

def scripted(answers: dict[str, Any]):
    """An llm answering the prompt '<task>: ...' with answers[task]; an exception is raised, 'HANG' never returns."""
    async def llm(prompt: str) -> str:
        reply = answers[prompt.split(":", 1)[0]]
        if isinstance(reply, BaseException):
            raise reply
        if reply == "HANG":
            await asyncio.Event().wait()
        return reply
    return llm


def parallelizer(votes: list[tuple[str, float, Any]], strategy: Any = "majority", combiner: Any = None,
                 quorum: int = 1, timeout: float | None = None, parser: Any = None):
    builder = ParallelizerBuilder().set_voting_strategy(strategy, combiner).set_quorum(quorum).set_timeout(timeout)
    for name, weight, _ in votes:
        builder.add_task(ParallelTask(name, name + ": is {text} spam?", weight=weight, parser=parser))
    return builder.build(scripted({name: answer for name, _, answer in votes}))


@pytest.mark.parametrize("strategy, votes, decision, tally", [
    ("majority", [("a", 1, "spam"), ("b", 1, "spam"), ("c", 1, "ham")], "spam", {"spam": 2, "ham": 1}),
    ("majority", [("a", 2.5, "spam"), ("b", 1, "ham"), ("c", 1, "ham")], "spam", {"spam": 2.5, "ham": 2}),
    ("majority", [("a", 1, "spam"), ("b", 1, "ham")], None, {"spam": 1, "ham": 1}),
    ("majority", [("a", 2, "spam"), ("b", 1, "ham"), ("c", 1, "ham")], None, {"spam": 2, "ham": 2}),
    ("majority", [("a", 1, " SPAM "), ("b", 1, "Spam\n"), ("c", 1, "ham")], "spam", {"spam": 2, "ham": 1}),
    ("unanimous", [("a", 1, "Yes"), ("b", 3, "yes "), ("c", 1, "YES")], "yes", {"yes": 5}),
    ("unanimous", [("a", 1, "yes"), ("b", 1, "yes"), ("c", 1, "no")], None, {"yes": 2, "no": 1}),
    ("weighted", [("a", 1, "4"), ("b", 3, " 8.0 ")], 7.0, {"4": 1, "8.0": 3}),
    ("weighted", [("a", 1, "4"), ("b", 1, "high"), ("c", 1, "High")], "high", {"4": 1, "high": 2}),
    ("weighted", [("a", 1, "4"), ("b", 1, "nan")], None, {"4": 1, "nan": 1}),
])
async def test_voting_truth_table(strategy: str, votes: list, decision: Any, tally: dict[str, float]) -> None:
    result = await parallelizer(votes, strategy).execute({"text": "Buy now!"})
    assert result.decision == decision
    assert result.votes == tally
    assert result.strategy is VotingStrategy(strategy)
    assert result.quorum_met
    assert set(result.task_results) == {name for name, _, _ in votes}
    if decision is None:
        assert result.confidence == 0.0
        assert ("tie" if strategy != "unanimous" else "no consensus") in result.explanation


async def test_majority_explains_and_scores_the_winner() -> None:
    result = await parallelizer([("a", 2.5, "spam"), ("b", 1, "ham"), ("c", 1, "spam")]).execute({"text": "x"})
    assert result.decision == "spam"
    assert result.explanation == "2 of 3 tasks voted 'spam' (weight 3.5 of 4.5)"
    assert result.confidence == pytest.approx(3.5 / 4.5)


async def test_weighted_falls_back_to_majority_and_says_so() -> None:
    result = await parallelizer([("a", 1, "4"), ("b", 1, "high"), ("c", 1, "high")], "weighted").execute({"text": "x"})
    assert result.decision == "high" and result.strategy is VotingStrategy.WEIGHTED
    assert "fell back to majority" in result.explanation


async def test_weighted_averages_parsed_numbers() -> None:
    votes = [("a", 1, "score: 2"), ("b", 1, "score: 4")]
    built = parallelizer(votes, VotingStrategy.WEIGHTED, parser=lambda s: int(s.split(":")[1]))
    result = await built.execute({"text": "x"})
    assert result.decision == 3.0 and result.confidence == 1.0


async def test_a_parser_decides_what_counts_as_the_same_answer() -> None:
    as_bool = lambda reply: reply.strip().lower() in {"yes", "true", "y"}  # noqa: E731
    votes = [("a", 1, "Yes"), ("b", 1, "y"), ("c", 1, "no")]
    result = await parallelizer(votes, parser=as_bool).execute({"text": "x"})
    assert result.decision is True and result.votes == {"true": 2, "false": 1}
    assert result.task_results["a"].output is True and result.task_results["a"].raw == "Yes"


async def test_a_failing_parser_fails_only_its_task() -> None:
    votes = [("a", 1, "7"), ("b", 1, "seven"), ("c", 1, "7")]
    result = await parallelizer(votes, parser=int).execute({"text": "x"})
    assert result.decision == 7
    failed = result.task_results["b"]
    assert not failed.ok and failed.error.startswith("Error: parser failed: ValueError") and failed.raw == "seven"


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_custom_combiner_gets_every_task_result(asynchronous: bool) -> None:
    seen: dict[str, TaskResult] = {}

    def pick(results: dict[str, TaskResult]) -> str:
        seen.update(results)
        flagged = [name for name, r in results.items() if r.ok and r.output == "spam"]
        return "blocked" if flagged else "allowed"

    async def apick(results: dict[str, TaskResult]) -> str:
        return pick(results)

    votes = [("a", 1, "ham"), ("b", 1, "spam"), ("c", 1, LLMError("down"))]
    result = await parallelizer(votes, "custom", apick if asynchronous else pick).execute({"text": "x"})
    assert result.decision == "blocked" and result.strategy is VotingStrategy.CUSTOM
    assert set(seen) == {"a", "b", "c"} and not seen["c"].ok


async def test_below_quorum_there_is_no_decision_and_the_combiner_is_not_asked() -> None:
    called = []
    votes = [("a", 1, "yes"), ("b", 1, LLMError("down")), ("c", 1, TimeoutError())]
    for strategy, combiner in [("majority", None), ("custom", lambda results: called.append(results) or "yes")]:
        result = await parallelizer(votes, strategy, combiner, quorum=2).execute({"text": "x"})
        assert result.decision is None and not result.quorum_met and result.confidence == 0.0
        assert "quorum not met" in result.explanation
        assert result.task_results["a"].output == "yes" and result.task_results["b"].error == "Error: down"
    assert called == []


async def test_a_failed_task_does_not_sink_the_vote() -> None:
    votes = [("a", 5, LLMAuthError("key rejected")), ("b", 1, "yes"), ("c", 1, "yes")]
    result = await parallelizer(votes, "unanimous").execute({"text": "x"})
    assert result.decision == "yes" and result.quorum_met
    assert result.task_results["a"].error == "Error: key rejected" and result.votes == {"yes": 2}
    assert "1 of 3 tasks failed" in result.explanation


async def test_per_task_and_default_timeouts_fail_only_the_slow_task() -> None:
    llm = scripted({"slow": "HANG", "own": "HANG", "fast": "yes"})
    built = (ParallelizerBuilder().set_timeout(0.05)
             .add_task(ParallelTask("slow", "slow: {text}"))
             .add_task(ParallelTask("own", "own: {text}", timeout=0.02))
             .add_task(ParallelTask("fast", "fast: {text}"))
             .build(llm))
    result = await built.execute({"text": "x"})
    assert result.decision == "yes"
    assert result.task_results["slow"].error == "Error: timed out after 0.05s"
    assert result.task_results["own"].error == "Error: timed out after 0.02s"


async def test_a_missing_placeholder_fails_that_task_not_the_call() -> None:
    built = (ParallelizerBuilder()
             .add_task(ParallelTask("a", "a: {text} in {language}"))
             .add_task(ParallelTask("b", "b: {text}"))
             .build(scripted({"a": "yes", "b": "no"})))
    result = await built.execute({"text": "x"})
    assert result.task_results["a"].error == "Error: missing placeholder {language}"
    assert result.decision == "no"


async def test_execute_reports_progress_per_task() -> None:
    recorder = Recorder()
    built = parallelizer([("a", 1, "yes"), ("b", 1, LLMError("down"))])
    result = await built.execute({"text": "x"}, **recorder.kwargs())
    assert result.decision == "yes"
    assert set(recorder.of("start")) == {"a", "b"}
    assert recorder.of("result") == {"a": "yes"} and recorder.of("error") == {"b": "Error: down"}


@pytest.mark.parametrize("setup, message", [
    (lambda b: b, "at least one"),
    (lambda b: b.add_task(ParallelTask("a", "x")).add_task(ParallelTask("a", "y")), "unique.*a"),
    (lambda b: b.add_task(ParallelTask("a", "x")).set_quorum(2), "quorum 2"),
    (lambda b: b.add_task(ParallelTask("a", "x")).set_voting_strategy("custom"), "custom_combiner"),
    (lambda b: b.add_task(ParallelTask("a", "x")).set_voting_strategy("majority", lambda r: 1), "only used"),
])
def test_builder_refuses_an_incomplete_setup(setup: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        setup(ParallelizerBuilder()).build(echo)


@pytest.mark.parametrize("make, message", [
    (lambda: ParallelTask("a", "x", weight=0), "weight"),
    (lambda: ParallelTask("a", "x", weight=-1), "weight"),
    (lambda: ParallelTask("a", "x {oops", weight=1), "format string"),
    (lambda: ParallelTask("a", "x", timeout=0), "timeout"),
    (lambda: ParallelizerBuilder().set_voting_strategy("plurality"), "unknown voting strategy"),
    (lambda: ParallelizerBuilder().set_quorum(0), "quorum"),
    (lambda: ParallelizerBuilder().set_timeout(-1), "timeout"),
])
def test_bad_settings_are_refused_at_once(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_strategy_names_are_accepted_in_any_case_and_a_bad_llm_is_refused() -> None:
    built = ParallelizerBuilder().add_task(ParallelTask("a", "x")).set_voting_strategy("Unanimous").build(echo)
    assert built.strategy is VotingStrategy.UNANIMOUS
    with pytest.raises(TypeError, match="llm"):
        ParallelizerBuilder().add_task(ParallelTask("a", "x")).build("not an llm")
