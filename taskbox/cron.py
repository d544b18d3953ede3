"""When a schedule fires next: cron expressions (croniter) and fixed intervals."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from taskbox.errors import InvalidSchedule
from taskbox.models import to_utc


def check_timezone(name: str) -> ZoneInfo:
    """Return the zone, or raise InvalidSchedule naming the bad value."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise InvalidSchedule(
            f"unknown timezone '{name}'; use an IANA name such as 'UTC' or "
            "'Europe/Paris'"
        ) from err


def check_cron(expression: str) -> None:
    """Raise InvalidSchedule unless the expression has 5 valid fields."""
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidSchedule(
            f"cron '{expression}' has {len(fields)} fields; give 5: minute hour "
            "day-of-month month day-of-week, e.g. '*/5 * * * *'"
        )
    try:
        croniter(expression).get_next(datetime)
    except CroniterBadDateError as err:
        raise InvalidSchedule(
            f"cron '{expression}' never fires (no such date, e.g. 30 February); "
            "check its day and month fields"
        ) from err
    except (CroniterBadCronError, ValueError, KeyError) as err:
        raise InvalidSchedule(f"cron '{expression}' is not valid: {err}") from err


def next_fire(
    cron: str | None,
    interval_seconds: float | None,
    timezone: str,
    after: datetime,
    previous: datetime | None = None,
) -> datetime:
    """Return the first fire time strictly after `after`, in UTC.

    Fires missed while nothing ran are skipped, not made up: a schedule that was
    due several times during an outage fires once, then keeps its rhythm.
    """
    if cron is not None:
        zone = check_timezone(timezone)
        local_after = after.astimezone(zone)
        fire: datetime = croniter(cron, local_after).get_next(datetime)
        return to_utc(fire)

    if interval_seconds is None or interval_seconds <= 0:
        raise InvalidSchedule(
            "give exactly one of cron and a positive interval_seconds"
        )
    step = timedelta(seconds=interval_seconds)
    if previous is None:
        return after + step
    fire = previous + step
    if fire <= after:
        missed = (after - previous) // step
        fire = previous + step * (missed + 1)
    return fire
