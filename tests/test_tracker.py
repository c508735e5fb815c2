"""Unit tests for document_it.core.tracker: request lifecycle, summary, prices and cost."""

from __future__ import annotations

import pytest

from document_it.core.tracker import PRICES_PER_MTOK, Prices, RequestStatus, RequestTracker


# --------------------------------------------------------------------------- lifecycle

def test_new_record_is_pending_with_unique_ids() -> None:
    tracker = RequestTracker()
    a = tracker.new("summarise")
    b = tracker.new("extract")
    assert a.status is RequestStatus.PENDING
    assert a.task == "summarise"
    assert a.attempts == 0 and a.rate_limited == 0
    assert a.id != b.id
    assert tracker.records == {a.id: a, b.id: b}


def test_attempt_marks_in_progress_and_counts() -> None:
    tracker = RequestTracker()
    rec = tracker.new("t")
    tracker.attempt(rec)
    assert rec.status is RequestStatus.IN_PROGRESS
    assert rec.attempts == 1
    tracker.attempt(rec)
    assert rec.attempts == 2


def test_retrying_marks_retrying_and_counts_rate_limits() -> None:
    tracker = RequestTracker()
    rec = tracker.new("t")
    tracker.attempt(rec)
    tracker.retrying(rec, "429 Too Many Requests", rate_limited=True)
    assert rec.status is RequestStatus.RETRYING
    assert rec.error == "429 Too Many Requests"
    assert rec.rate_limited == 1
    tracker.attempt(rec)
    tracker.retrying(rec, "502 Bad Gateway")  # not a rate limit
    assert rec.rate_limited == 1
    assert rec.error == "502 Bad Gateway"
    assert rec.attempts == 2  # retrying() itself is not an attempt


def test_finish_ok_completes_and_clears_error() -> None:
    tracker = RequestTracker()
    rec = tracker.new("t")
    tracker.attempt(rec)
    tracker.retrying(rec, "timeout")
    tracker.attempt(rec)
    tracker.finish(rec)
    assert rec.status is RequestStatus.COMPLETED
    assert rec.error is None
    assert rec.seconds >= 0.0


def test_finish_with_error_fails() -> None:
    tracker = RequestTracker()
    rec = tracker.new("t")
    tracker.attempt(rec)
    tracker.finish(rec, error="gave up")
    assert rec.status is RequestStatus.FAILED
    assert rec.error == "gave up"


def test_usage_accumulates() -> None:
    tracker = RequestTracker()
    rec = tracker.new("t")
    tracker.usage(rec, 100, 20)
    tracker.usage(rec, 50, 5)
    assert (rec.tokens_in, rec.tokens_out) == (150, 25)


# --------------------------------------------------------------------------- summary

def _finished(tracker: RequestTracker, seconds: float, attempts: int = 1, error: str | None = None,
              rate_limited: int = 0, tokens: tuple[int, int] = (0, 0)):
    rec = tracker.new("t")
    for i in range(attempts):
        tracker.attempt(rec)
        if i < attempts - 1:
            tracker.retrying(rec, "429", rate_limited=i < rate_limited)
    tracker.usage(rec, *tokens)
    tracker.finish(rec, error=error)
    rec.seconds = seconds
    return rec


def test_summary_counts_latency_tokens_and_cost() -> None:
    tracker = RequestTracker(Prices.for_model("gpt-4o-mini"))
    # ten finished requests with latencies 1..10 s (two failed)
    for s in range(1, 11):
        _finished(tracker, float(s), attempts=3 if s in (4, 9) else 1, error="x" if s in (2, 7) else None,
                  rate_limited=2 if s == 4 else 0, tokens=(1000, 100))
    tracker.new("waiting")  # pending: no latency
    running = tracker.new("running")
    tracker.attempt(running)
    running.seconds = 999.0  # not finished: must not count in the latency
    again = tracker.new("again")
    tracker.attempt(again)
    tracker.retrying(again, "429", rate_limited=True)

    summary = tracker.get_summary()
    assert summary["requests"] == 13
    assert summary["by_status"] == {"pending": 1, "in_progress": 1, "retrying": 1, "completed": 8, "failed": 2}
    assert summary["attempts"] == 10 + 2 * 2 + 1 + 1  # 16
    assert summary["retries"] == 4
    assert summary["rate_limited"] == 2 + 1
    assert summary["latency_s"] == {"p50": 5.0, "p95": 10.0, "max": 10.0}
    assert summary["tokens_in"] == 10_000
    assert summary["tokens_out"] == 1_000
    assert summary["cost_usd"] == pytest.approx((10_000 * 0.15 + 1_000 * 0.60) / 1e6)
    assert summary["price_per_mtok"] == {"in": 0.15, "out": 0.60}


def test_summary_percentiles_nearest_rank() -> None:
    tracker = RequestTracker()
    for s in range(1, 21):  # 1..20, finished in shuffled order
        _finished(tracker, float((s * 7) % 20 + 1))
    lat = tracker.get_summary()["latency_s"]
    assert lat == {"p50": 10.0, "p95": 19.0, "max": 20.0}


def test_summary_single_record_latency() -> None:
    tracker = RequestTracker()
    _finished(tracker, 2.5)
    assert tracker.get_summary()["latency_s"] == {"p50": 2.5, "p95": 2.5, "max": 2.5}


def test_summary_empty() -> None:
    summary = RequestTracker().get_summary()
    assert summary["requests"] == 0
    assert summary["by_status"] == {s.value: 0 for s in RequestStatus}
    assert summary["attempts"] == summary["retries"] == summary["rate_limited"] == 0
    assert summary["latency_s"] == {"p50": 0.0, "p95": 0.0, "max": 0.0}
    assert summary["cost_usd"] is None  # no prices known


def test_summary_cost_none_for_unknown_model() -> None:
    tracker = RequestTracker(Prices.for_model("my-local-llama"))
    _finished(tracker, 1.0, tokens=(500, 500))
    summary = tracker.get_summary()
    assert summary["cost_usd"] is None
    assert summary["tokens_in"] == 500


# --------------------------------------------------------------------------- prices

def test_prices_for_known_model() -> None:
    assert Prices.for_model("gpt-4o-mini") == Prices(0.15, 0.60)
    assert Prices.for_model("gpt-4o") == Prices(2.50, 10.00)
    assert PRICES_PER_MTOK["gpt-4o-mini"] == (0.15, 0.60)


@pytest.mark.parametrize("model, expected", [
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # must not fall back to gpt-4o
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
    ("gpt-5-nano-2025-08-07", "gpt-5-nano"),
    ("gpt-5-2025-08-07", "gpt-5"),
])
def test_prices_dated_variant_matches_longest_prefix(model: str, expected: str) -> None:
    assert Prices.for_model(model) == Prices(*PRICES_PER_MTOK[expected])


def test_prices_overrides_win() -> None:
    assert Prices.for_model("gpt-4o-mini", price_in=1.0) == Prices(1.0, 0.60)
    assert Prices.for_model("gpt-4o-mini", price_out=2.0) == Prices(0.15, 2.0)
    assert Prices.for_model("gpt-4o-mini", price_in=0.0, price_out=0.0) == Prices(0.0, 0.0)
    assert Prices.for_model("unknown-model", price_in=1.0, price_out=3.0) == Prices(1.0, 3.0)


def test_prices_unknown_model_has_no_cost() -> None:
    prices = Prices.for_model("claude-something")
    assert prices == Prices(None, None)
    assert prices.cost(1000, 1000) is None
    assert Prices.for_model("unknown", price_in=1.0).cost(1000, 1000) is None  # half a price is no price


def test_prices_cost_per_million() -> None:
    prices = Prices.for_model("gpt-4o-mini")
    assert prices.cost(1_000_000, 1_000_000) == pytest.approx(0.75)
    assert prices.cost(0, 0) == 0.0
    assert Prices(0.0, 0.0).cost(123, 456) == 0.0  # free is a known price, not an unknown one


def test_tracker_tokens_and_cost_properties() -> None:
    tracker = RequestTracker(Prices.for_model("gpt-4o"))
    a = tracker.new("a")
    b = tracker.new("b")
    tracker.usage(a, 200_000, 10_000)
    tracker.usage(b, 300_000, 40_000)
    assert tracker.tokens == 550_000
    assert tracker.cost == pytest.approx((500_000 * 2.50 + 50_000 * 10.00) / 1e6)
    assert RequestTracker().cost is None
    assert RequestTracker().tokens == 0
