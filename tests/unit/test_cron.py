"""When schedules fire next: cron in a timezone, intervals, and missed fires."""

from datetime import UTC, datetime, timedelta

import pytest

from taskbox.cron import check_cron, check_timezone, next_fire
from taskbox.errors import InvalidSchedule


def test_cron_fires_at_the_next_matching_minute() -> None:
    after = datetime(2026, 3, 1, 10, 7, 30, tzinfo=UTC)

    assert next_fire("*/5 * * * *", None, "UTC", after) == datetime(
        2026, 3, 1, 10, 10, tzinfo=UTC
    )


def test_cron_reads_its_hours_in_the_schedules_timezone() -> None:
    after = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)

    fire = next_fire("0 9 * * *", None, "Europe/Paris", after)

    assert fire == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)  # 09:00 CEST is 07:00 UTC


def test_cron_follows_daylight_saving_changes() -> None:
    winter = next_fire(
        "0 9 * * *", None, "Europe/Paris", datetime(2026, 1, 10, tzinfo=UTC)
    )
    summer = next_fire(
        "0 9 * * *", None, "Europe/Paris", datetime(2026, 7, 10, tzinfo=UTC)
    )

    assert winter.hour == 8
    assert summer.hour == 7


def test_interval_first_fire_is_one_interval_after_creation() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)

    assert next_fire(None, 90, "UTC", now) == now + timedelta(seconds=90)


def test_interval_keeps_its_rhythm_and_skips_missed_fires() -> None:
    previous = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    on_time = next_fire(None, 60, "UTC", previous + timedelta(seconds=1), previous)
    after_outage = next_fire(
        None, 60, "UTC", previous + timedelta(minutes=10, seconds=5), previous
    )

    assert on_time == previous + timedelta(seconds=60)
    assert after_outage == previous + timedelta(minutes=11)


@pytest.mark.parametrize(
    "expression", ["* * * *", "* * * * * *", "61 * * * *", "a b c d e"]
)
def test_bad_cron_is_refused_with_the_expected_form(expression: str) -> None:
    with pytest.raises(InvalidSchedule, match="cron"):
        check_cron(expression)


def test_unknown_timezone_is_refused_with_an_example() -> None:
    with pytest.raises(InvalidSchedule, match="Europe/Paris"):
        check_timezone("Mars/Olympus")
