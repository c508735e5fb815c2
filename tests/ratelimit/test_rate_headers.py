"""Unit tests for the rate-limit header readers in document_it.core.ratelimit: durations, Retry-After
(and its -ms and reset variants) and an announced requests-per-minute limit."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from document_it.core.ratelimit import announced_rpm, parse_duration, retry_after_seconds


# --------------------------------------------------------------------------- parse_duration

@pytest.mark.parametrize("text, expected", [
    ("1s", 1.0),
    ("1.5s", 1.5),
    ("250ms", 0.25),
    ("6m0s", 360.0),
    ("1m3s", 63.0),
    ("1h2m", 3720.0),
    ("20ms", 0.02),
    ("2", 2.0),
    ("0.5", 0.5),
    (" 1s ", 1.0),
])
def test_parse_duration_valid(text: str, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["abc", "", "1x", "5 parsecs", "1s2q", "soon", "s"])
def test_parse_duration_garbage_is_none(text: str) -> None:
    assert parse_duration(text) is None


# --------------------------------------------------------------------------- retry_after_seconds

def test_retry_after_ms_wins_over_retry_after() -> None:
    assert retry_after_seconds({"retry-after-ms": "1500", "Retry-After": "10"}) == pytest.approx(1.5)


def test_retry_after_seconds_plain() -> None:
    assert retry_after_seconds({"Retry-After": "7"}) == pytest.approx(7.0)


def test_retry_after_invalid_ms_falls_back_to_retry_after() -> None:
    assert retry_after_seconds({"retry-after-ms": "soon", "retry-after": "4"}) == pytest.approx(4.0)


def test_retry_after_http_date_in_future() -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    got = retry_after_seconds({"Retry-After": format_datetime(when, usegmt=True)})
    assert got is not None
    assert got == pytest.approx(30.0, abs=2.0)  # the header format drops sub-second precision


def test_retry_after_http_date_in_past_is_zero() -> None:
    when = datetime.now(timezone.utc) - timedelta(seconds=300)
    assert retry_after_seconds({"Retry-After": format_datetime(when, usegmt=True)}) == 0.0


@pytest.mark.parametrize("headers, expected", [
    ({"RETRY-AFTER-MS": "250"}, 0.25),
    ({"Retry-After-Ms": "250"}, 0.25),
    ({"rEtRy-AfTeR": "3"}, 3.0),
    ({"X-RateLimit-Remaining-Requests": "0", "X-RateLimit-Reset-Requests": "2s"}, 2.0),
])
def test_retry_after_header_names_case_insensitive(headers: dict, expected: float) -> None:
    assert retry_after_seconds(headers) == pytest.approx(expected)


def test_reset_requests_used_when_remaining_is_zero() -> None:
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}
    assert retry_after_seconds(headers) == pytest.approx(360.0)


def test_reset_requests_ignored_when_remaining_positive() -> None:
    headers = {"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "6m0s"}
    assert retry_after_seconds(headers) is None


def test_reset_takes_longest_of_exhausted_limits() -> None:
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s",
               "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m3s"}
    assert retry_after_seconds(headers) == pytest.approx(63.0)
    headers["x-ratelimit-remaining-tokens"] = "900"
    assert retry_after_seconds(headers) == pytest.approx(1.0)


def test_retry_after_wins_over_reset_headers() -> None:
    headers = {"retry-after": "2", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}
    assert retry_after_seconds(headers) == pytest.approx(2.0)


@pytest.mark.parametrize("headers", [{}, {"content-type": "application/json"}, {"retry-after": "whenever"}])
def test_retry_after_nothing_is_none(headers: dict) -> None:
    assert retry_after_seconds(headers) is None


# --------------------------------------------------------------------------- announced_rpm

@pytest.mark.parametrize("key", ["x-ratelimit-limit-requests", "X-RateLimit-Limit-Requests", "X-RATELIMIT-LIMIT-REQUESTS"])
def test_announced_rpm_case_insensitive(key: str) -> None:
    assert announced_rpm({"content-type": "text/plain", key: "500"}) == 500.0


def test_announced_rpm_non_number_is_none() -> None:
    assert announced_rpm({"x-ratelimit-limit-requests": "lots"}) is None


def test_announced_rpm_absent_is_none() -> None:
    assert announced_rpm({"x-ratelimit-limit-tokens": "10000"}) is None
