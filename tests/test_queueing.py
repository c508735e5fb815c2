"""A server that queues (one slot, like llama.cpp) is told from one that serves in parallel by latency, and
the window settles near what it really serves, so nothing times out waiting behind the others."""

from __future__ import annotations

import pytest

from document_it.config import LLMKind, Settings
from document_it.core.queueing import PARALLEL_VERDICT, QUEUEING_VERDICT, QueueWatch, StartProbe
from document_it.core.ratelimit import AdaptiveWindow
from document_it.run.pipeline import run
from document_it.testing.docsite import write_docsite
from document_it.testing.llm_sim import SimServer



def _feed(watch: QueueWatch, latencies: list[float], window: int, tokens_out: int = 100) -> int | None:
    """Replies sent under `window`; the last decision."""
    decision = None
    for seconds in latencies:
        decision = watch.observe(seconds, 500, tokens_out, window) or decision
    return decision


def test_replies_as_fast_as_the_fastest_leave_the_window_alone():
    watch = QueueWatch()
    assert _feed(watch, [0.50, 0.55, 0.52, 0.61, 0.50, 0.58], 20) is None and watch.keeps_up


def test_a_queue_is_halved_while_latency_falls_with_it_and_settles_at_two_slots():
    watch = QueueWatch()
    assert _feed(watch, [0.5, 1.5, 2.0, 2.5], 20) == 20  # each waited behind the others: measure
    assert _feed(watch, [10.0] * 4, 20) == 10  # the steady wait at 20
    assert _feed(watch, [5.0] * 4, 10) == 5  # half the window, half the wait: a queue
    assert _feed(watch, [2.5] * 4, 5) == 2
    assert _feed(watch, [1.0] * 4, 2) == 1
    assert _feed(watch, [0.5] * 4, 1) == 2 and watch.settled == 2  # one slot: keep one request waiting


def test_a_server_with_four_slots_settles_just_above_them():
    watch = QueueWatch()
    assert _feed(watch, [0.5, 1.5, 2.0, 2.5], 20) == 20
    assert _feed(watch, [2.5] * 4, 20) == 10  # 20 in flight over 4 slots of 0.5 s
    assert _feed(watch, [1.25] * 4, 10) == 5
    assert _feed(watch, [0.6] * 4, 5) == 2
    assert _feed(watch, [0.5] * 4, 2) == 5 and watch.settled == 5  # under 4 the wait stopped falling


def test_a_suspicion_the_halving_does_not_confirm_gives_the_window_back():
    watch = QueueWatch()
    assert _feed(watch, [0.5, 1.6, 1.7, 1.5], 20) == 20  # slow replies, but not from a queue
    assert _feed(watch, [1.2] * 4, 20) == 10
    assert _feed(watch, [1.2] * 4, 10) == 20 and watch.settled == 20


def test_a_slower_reply_with_more_work_is_not_a_queue():
    watch = QueueWatch()
    _feed(watch, [0.5] * 3, 20)  # 0.5 s for 100 + 50 + 64 units of work
    assert watch.observe(3.0, 2000, 1200, 20) is None  # a batch of answers: slow for an honest reason


async def test_the_window_follows_the_probe_and_ignores_replies_sent_before_a_change():
    window = AdaptiveWindow(20)
    for seconds in (0.5, 1.5, 2.0, 2.5):
        await window.on_latency(seconds, 500, 100, sent_at=0.0)
    assert window.limit == 20 and window.queue_cuts == 0  # suspected: the steady wait is measured next
    await window.on_latency(9.0, 500, 100, sent_at=0.0)  # sent before the suspicion: ignored
    for _ in range(4):
        await window.on_latency(2.4, 500, 100, sent_at=float("inf"))
    assert window.limit == 10 and window.queue_cuts == 1
    await window.on_success()
    assert window.limit == 10  # no growth during the probe
    for _ in range(4):
        await window.on_latency(2.4, 500, 100, sent_at=float("inf"))  # did not fall with the window
    assert window.limit == 20 and window.watch.settled == 20


def test_the_start_probe_tells_side_by_side_from_one_after_another():
    parallel, queueing = StartProbe(), StartProbe()
    assert parallel.observe(0.0, 1.0, 500, 100) is None
    assert parallel.observe(0.0, 1.1, 500, 110) == PARALLEL_VERDICT  # served beside the first
    queueing.observe(0.0, 1.0, 500, 100)
    assert queueing.observe(0.0, 2.0, 500, 100) == QUEUEING_VERDICT  # served after the first


def test_the_start_probe_judges_only_requests_that_were_out_together():
    probe = StartProbe()
    probe.observe(0.0, 1.0, 500, 100)
    assert probe.observe(2.0, 2.0, 500, 100) is None  # sent after the first came back: says nothing
    assert probe.observe(2.1, 3.8, 500, 100) == QUEUEING_VERDICT  # waited for the one sent at 2.0


async def test_a_probed_window_opens_for_a_parallel_server_and_stays_at_two_for_a_queue():
    opened, queued = AdaptiveWindow(20, probe=True), AdaptiveWindow(20, probe=True)
    assert opened.limit == queued.limit == 2 and opened.probing
    await opened.on_success()
    assert opened.limit == 2  # no growth before the verdict
    for seconds in (1.0, 1.05):
        await opened.on_latency(seconds, 500, 100, sent_at=0.0)
    assert opened.limit == 20 and not opened.probing and opened.watch.settled is None
    for seconds in (1.0, 2.0):
        await queued.on_latency(seconds, 500, 100, sent_at=0.0)
    assert queued.limit == 2 == queued.watch.settled
    for _ in range(4):  # two in flight, each waiting for the other: slower than the first, stays at two
        await queued.on_latency(2.0, 500, 100, sent_at=float("inf"))
    assert queued.limit == 2


async def test_a_wrong_queueing_verdict_is_undone_when_replies_keep_pace():
    window = AdaptiveWindow(20, probe=True)
    for seconds in (1.0, 2.0):
        await window.on_latency(seconds, 500, 100, sent_at=0.0)
    assert window.limit == 2
    for _ in range(4):
        await window.on_latency(1.05, 500, 100, sent_at=float("inf"))
    assert window.limit == 20 and window.watch.settled is None


async def test_a_window_settled_at_one_does_not_reopen_on_replies_that_had_no_company():
    window = AdaptiveWindow(20, probe=True, timeout_s=10)
    for seconds in (3.0, 6.0):  # a queue, and a reply over a quarter of the timeout: one at a time
        await window.on_latency(seconds, 500, 100, sent_at=0.0)
    assert window.limit == 1 == window.watch.settled
    for _ in range(6):
        await window.on_latency(3.0, 500, 100, sent_at=float("inf"))  # as fast as the first: it was alone
    assert window.limit == 1


async def test_the_probe_leaves_the_queue_watch_untouched_and_gives_up_when_nothing_overlaps():
    window = AdaptiveWindow(20, probe=True)
    for i in range(6):  # one request at a time, far apart: no pair to judge
        await window.on_latency(2.0 if i % 2 else 0.5, 500, 100, sent_at=10.0 * i)
    assert not window.probing and window.limit == 20 and window.start.verdict == "none"
    assert window.queue_cuts == 0 and window.watch.keeps_up  # nothing was suspected meanwhile


def test_a_429_during_the_probe_cuts_from_the_whole_window_and_a_timeout_from_the_probe():
    limited, slow = AdaptiveWindow(20, probe=True), AdaptiveWindow(20, probe=True)
    assert limited.on_throttle(1.0, 0.0) and limited.limit == 10 and not limited.probing
    assert slow.on_throttle(1.0, 0.0, timed_out=True) and slow.limit == 1 and not slow.probing


@pytest.fixture(scope="module")
def site(corpus_site):
    return corpus_site


def _run(tmp_path, site, sim, **extra) -> dict:
    return run(Settings(source=site.url("llms.txt"), allow_private=True, output_dir=tmp_path / "out",
                        state_dir=tmp_path / "state", quiet=True, llm=LLMKind.OPENAI, llm_base_url=sim.base_url,
                        no_cache=True, request_timeout=10, **extra))


def test_a_serial_server_settles_the_window_low_and_nothing_times_out(tmp_path):
    # Latency is all the window has to go on, and the client's own share of a reply's time (building the request,
    # reading and validating the answer) grows to a few hundred ms on a busy machine. A server serving each request
    # in about half a second (300 ms + 2 ms a token) keeps its queue far above that noise: a reply of 60 ms was
    # lost in it, and the start probe read a serial server as a parallel one.
    write_docsite(tmp_path / "site", 4, sections=1)  # 6 pages of 2 analyses, and the topic syntheses
    with SimServer(latency_ms=300, ms_per_token=2, serial=True, max_seconds=300) as sim:
        summary = run(Settings(source=str(tmp_path / "site"), output_dir=tmp_path / "out", quiet=True,
                               state_dir=tmp_path / "state", llm=LLMKind.OPENAI, llm_base_url=sim.base_url,
                               no_cache=True, request_timeout=10, batch_size=1,  # the window alone decides
                               tasks=("summary", "key_concepts")))
        stats = sim.stats()
    assert stats["max_serving"] == 1
    llm = summary["llm"]
    assert summary["documents"]["failed"] == 0 and summary["documents"]["completed"] >= 6
    assert llm["retries"] == 0 and llm["by_status"]["failed"] == 0  # no timeouts, no retries
    # found by the start probe, or later by the watch on replies (which of the two depends on the first pair)
    assert llm["window"]["start_probe"] == "queueing" or llm["window"]["queueing_cuts"] >= 1, llm["window"]
    assert llm["window"]["current"] <= 2 == llm["window"]["settled"], llm["window"]


def test_a_server_that_serves_in_parallel_keeps_the_whole_window(tmp_path, site):
    # replies of about half a second: the start probe's pair, served side by side, comes back together however long
    # a busy machine takes to read each (a gap of half the reply's time would read as one after the other)
    with SimServer(latency_ms=400, ms_per_token=1, max_seconds=300) as sim:
        summary = _run(tmp_path, site, sim)
    window = summary["llm"]["window"]
    assert summary["documents"]["failed"] == 0 and window["cap"] == 20
    # a suspicion (a busy machine slows replies too) may halve the window for a probe, never settle it lower
    assert window["settled"] in (None, 20) and window["queueing_cuts"] <= 1


async def test_a_timeout_with_many_in_flight_halves_the_window():
    import asyncio

    from document_it.analysis.gateway import build_gateway
    from document_it.analysis.prompts import Task, TopicInput
    from document_it.config import StructuredMethod
    from document_it.errors import LLMTransientError

    from _fake_llm import ScriptedLLM

    topics = [TopicInput(f"T{i}", ((f"P{i}", "s", ()),)) for i in range(4)]
    with ScriptedLLM([], hang_s=10) as llm:  # a server that sits on every request, far past every attempt limit
        settings = Settings(llm=LLMKind.OPENAI, llm_base_url=llm.base_url, api_key="sk-test-0123456789",
                            max_concurrency=8, request_timeout=0.3, retries=0, batch_size=1,
                            structured_output=StructuredMethod.JSON_SCHEMA)
        async with build_gateway(settings) as gateway:
            results = await asyncio.gather(*(gateway.ask(Task.TOPIC_SYNTHESIS, t) for t in topics),
                                           return_exceptions=True)
            window = gateway.limiter.window
    assert all(isinstance(r, LLMTransientError) and ("timed out" in str(r) or "took longer" in str(r))
               for r in results), results
    # the start probe's two requests time out together: halved once for the round trip, not once per request;
    # the others, one in flight at a time, say nothing about a queue
    assert window.limit == 1 and window.cuts == 1 and not window.probing


def test_a_slow_one_slot_server_gets_two_requests_from_the_start_and_none_times_out(tmp_path):
    # 1.5 s a reply: twenty in flight would have the fourth waiting six seconds, past the timeout
    write_docsite(tmp_path / "site", 3)
    with SimServer(latency_ms=1500, ms_per_token=0, serial=True, max_seconds=300) as sim:
        summary = run(Settings(source=str(tmp_path / "site"), output_dir=tmp_path / "out", quiet=True,
                               state_dir=tmp_path / "state", llm=LLMKind.OPENAI, llm_base_url=sim.base_url,
                               no_cache=True, request_timeout=5, tasks=("summary", "key_concepts")))
        assert sim.stats()["max_in_flight"] <= 2
    llm = summary["llm"]
    assert summary["documents"]["failed"] == 0 and summary["documents"]["completed"] >= 3
    assert llm["retries"] == 0 and llm["by_status"]["failed"] == 0
    assert llm["window"]["settled"] in (1, 2) and llm["window"]["current"] <= 2  # 1 when a reply is over 5 s / 4


def test_a_start_probe_in_doubt_says_queueing():
    # a one-slot server taking 1.6 s whatever the reply's length: a pair of 118 and 223 units of work reads
    # as side by side if time grew with work, as one after the other if it did not; the safe reading wins
    probe = StartProbe()
    assert probe.observe(0.0, 1.6, 287, 25) is None
    assert probe.observe(0.0, 3.1, 426, 116) == QUEUEING_VERDICT
    parallel = StartProbe()  # the same pair from a server that did serve them side by side
    parallel.observe(0.0, 1.6, 287, 25)
    assert parallel.observe(0.0, 1.7, 426, 116) == PARALLEL_VERDICT


def test_a_pair_of_quick_replies_that_did_not_overlap_ends_the_probe():
    # replies this quick could wait behind the whole window and still not time out: nothing to guard against
    quick = StartProbe(fast_s=3.0)
    assert quick.observe(0.0, 0.4, 500, 100) is None
    assert quick.observe(0.5, 0.4, 500, 100) == "none"
    # slow replies one after the other tell nothing yet: the probe waits for a pair that was out together
    slow = StartProbe(fast_s=3.0)
    assert slow.observe(0.0, 5.0, 500, 100) is None
    assert slow.observe(10.0, 5.0, 500, 100) is None and slow.verdict is None


def test_the_start_probe_judges_the_first_pair_even_when_it_meets_the_json_schema_refusals(tmp_path):
    # llama-cpp-python's way: json_schema answers 500, so the first pair is sent again as function calls; its
    # replies still tell a one-slot server (later pairs have waited behind each other and tell nothing sure)
    write_docsite(tmp_path / "site", 4)
    with SimServer(latency_ms=1500, ms_per_token=0, serial=True, no_json_schema=True, max_seconds=300) as sim:
        summary = run(Settings(source=str(tmp_path / "site"), output_dir=tmp_path / "out", quiet=True,
                               state_dir=tmp_path / "state", llm=LLMKind.OPENAI, llm_base_url=sim.base_url,
                               no_cache=True, request_timeout=10, tasks=("summary", "key_concepts")))
        assert sim.stats()["max_in_flight"] <= 2
    window = summary["llm"]["window"]
    assert window["start_probe"] == "queueing" and window["settled"] in (1, 2), window
    assert summary["documents"]["failed"] == 0 and summary["llm"]["retries"] == 0


def test_two_probe_replies_decoding_at_once_say_parallel_at_their_first_tokens():
    probe = StartProbe()
    first, second = probe.stream(), probe.stream()
    first.first()
    assert probe.verdict is None
    second.first()
    assert probe.verdict == PARALLEL_VERDICT and probe.early


def test_a_first_token_after_the_other_reply_ended_leaves_the_verdict_to_the_whole_replies():
    probe = StartProbe()
    first, second = probe.stream(), probe.stream()
    first.first()
    first.end()  # a server that serves in turn starts the second only now
    second.first()
    assert probe.verdict is None and not probe.early


def _topics(count: int) -> list:
    from document_it.analysis.prompts import TopicInput
    return [TopicInput(f"T{i}", ((f"Page {i}", f"About thing {i}", ("alpha",)),)) for i in range(count)]


async def _ask_topics(sim_or_url, tmp_path, count: int = 6):
    import asyncio

    from document_it.analysis.gateway import build_gateway
    from document_it.analysis.prompts import Task
    from document_it.config import StructuredMethod
    base = getattr(sim_or_url, "base_url", sim_or_url)
    settings = Settings(llm=LLMKind.OPENAI, llm_base_url=base, api_key="sk-test-0123456789", batch_size=1,
                        structured_output=StructuredMethod.JSON_SCHEMA, state_dir=tmp_path / "state", retries=0)
    async with build_gateway(settings) as gateway:
        values = await asyncio.gather(*(gateway.ask(Task.TOPIC_SYNTHESIS, t) for t in _topics(count)))
    return values, gateway


async def test_a_parallel_server_is_known_at_the_probes_first_tokens_and_the_rest_go_while_it_decodes(tmp_path):
    # replies of about two seconds (50 ms to the first token, then 40 tokens a second): the probe's pair is
    # streamed, and the other four prompts are sent while the pair is still decoding, not after it ends
    with SimServer(latency_ms=50, ms_per_token=25, max_seconds=120) as sim:
        values, gateway = await _ask_topics(sim, tmp_path)
        stats = sim.stats()
    start = gateway.limiter.window.start
    assert start.verdict == PARALLEL_VERDICT and start.early and gateway.provider.streams
    assert stats["max_serving"] == 6 and stats["requests"] == 6  # all six served at once, each sent once
    assert all(value.overview and value.key_themes for value in values)  # read whole from the streams


async def test_a_one_slot_server_streams_the_probe_but_is_judged_on_its_whole_replies(tmp_path):
    with SimServer(latency_ms=50, ms_per_token=5, serial=True, max_seconds=120) as sim:
        values, gateway = await _ask_topics(sim, tmp_path, count=4)
    start = gateway.limiter.window.start
    assert start.verdict == QUEUEING_VERDICT and not start.early and all(v.overview for v in values)


async def test_a_server_that_refuses_a_stream_is_asked_again_whole_and_never_streamed_to_again(tmp_path):
    import json

    from _fake_llm import ScriptedLLM, completion
    ok = completion(json.dumps({"overview": "Fine.", "key_themes": ["a"]}))
    refusal = (400, {"error": {"message": "Streaming is not supported for this model", "type": "invalid_request"}})
    with ScriptedLLM([refusal, ok, ok, ok]) as llm:  # ScriptedLLM answers whole (JSON) even when asked to stream
        values, gateway = await _ask_topics(llm.base_url, tmp_path, count=3)
        bodies = llm.requests
    assert [v.overview for v in values] == ["Fine."] * 3 and not gateway.provider.streams
    # the probe's requests went out streamed (the second too, unless the refusal came back before it left);
    # the refused one was asked again whole, and so was every request after it
    streamed = [bool(body.get("stream")) for body in bodies]
    assert len(bodies) == 4 and streamed[0] and 1 <= sum(streamed) <= 2
    assert streamed == sorted(streamed, reverse=True)  # no stream once the refusal was seen
