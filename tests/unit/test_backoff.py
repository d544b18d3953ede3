"""Exponential backoff with full jitter, as the worker computes each retry's wait."""

import random

import pytest

from taskbox.registry import TaskDef
from taskbox.worker import retry_delay_s


def _noop() -> None:
    return None


def definition(base: float, cap: float) -> TaskDef:
    return TaskDef(name="t", fn=_noop, backoff_base_s=base, backoff_cap_s=cap)


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0)]
)
def test_wait_after_attempt_n_is_within_base_times_two_to_the_n_minus_one(
    attempt: int, ceiling: float
) -> None:
    waits = [retry_delay_s(definition(2.0, 3600.0), attempt) for _ in range(2000)]

    assert all(0.0 <= w <= ceiling for w in waits)
    # Full jitter spreads waits over the whole range, not just near the ceiling.
    assert min(waits) < ceiling * 0.1
    assert max(waits) > ceiling * 0.9


def test_wait_never_exceeds_the_cap_however_many_attempts() -> None:
    waits = [retry_delay_s(definition(1.0, 30.0), n) for n in range(1, 200)]

    assert all(0.0 <= w <= 30.0 for w in waits)


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert 0.0 <= retry_delay_s(definition(1.0, 60.0), 10_000) <= 60.0


def test_zero_base_retries_at_once() -> None:
    assert retry_delay_s(definition(0.0, 0.0), 5) == 0.0


def test_unknown_definition_uses_one_second_base_and_one_hour_cap() -> None:
    random.seed(7)
    waits = [retry_delay_s(None, 1) for _ in range(500)]
    capped = [retry_delay_s(None, 40) for _ in range(500)]

    assert all(0.0 <= w <= 1.0 for w in waits)
    assert all(0.0 <= w <= 3600.0 for w in capped)
    assert max(capped) > 1800.0
