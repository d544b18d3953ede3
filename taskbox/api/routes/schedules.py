"""Schedule routes: recurring tasks by cron expression or fixed interval."""

from typing import Any

import redis
from fastapi import APIRouter, Response, status

from taskbox.api.deps import ServicesDep
from taskbox.cron import check_cron, check_timezone
from taskbox.errors import InvalidSchedule
from taskbox.models import ScheduleCreate, SchedulePublic, ScheduleUpdate, utcnow
from taskbox.services import Services

router = APIRouter(prefix="/schedules", tags=["schedules"])


def _check_rule(values: dict[str, Any], services: Services) -> None:
    definition = services.registry.get(values["task"])
    definition.check_payload(values.get("payload") or {})
    if values.get("cron") is not None:
        check_cron(values["cron"])
    check_timezone(values.get("timezone") or "UTC")


def _nudge(services: Services) -> None:
    try:
        services.queue.nudge_scheduler()
    except redis.RedisError:
        pass  # the scheduler rereads schedules every second anyway


@router.post("", status_code=status.HTTP_201_CREATED, include_in_schema=False)
@router.post("/", status_code=status.HTTP_201_CREATED)
def create_schedule(body: ScheduleCreate, services: ServicesDep) -> SchedulePublic:
    """Create a schedule; 409 when the name is taken."""
    values = body.model_dump()
    _check_rule(values, services)
    schedule = services.store.schedules.create(values, utcnow())
    _nudge(services)
    return SchedulePublic.of(schedule)


@router.get("/")
@router.get("", include_in_schema=False)
def list_schedules(services: ServicesDep) -> list[SchedulePublic]:
    """List every schedule, by name."""
    return [SchedulePublic.of(s) for s in services.store.schedules.all()]


@router.get("/{name}")
def get_schedule(name: str, services: ServicesDep) -> SchedulePublic:
    """Read one schedule."""
    return SchedulePublic.of(services.store.schedules.get(name))


@router.patch("/{name}")
def update_schedule(
    name: str, body: ScheduleUpdate, services: ServicesDep
) -> SchedulePublic:
    """Change a schedule, e.g. enable or disable it."""
    changes = body.model_dump(exclude_unset=True)
    if "cron" in changes and "interval_seconds" in changes:
        if (changes["cron"] is None) == (changes["interval_seconds"] is None):
            raise InvalidSchedule("give exactly one of cron and interval_seconds")
    current = services.store.schedules.get(name)
    merged = {**current.model_dump(), **changes}
    if changes.get("cron") is not None:
        merged["interval_seconds"] = None
    if changes.get("interval_seconds") is not None:
        merged["cron"] = None
    _check_rule(merged, services)

    schedule = services.store.schedules.update(name, changes, utcnow())
    _nudge(services)
    return SchedulePublic.of(schedule)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_schedule(name: str, services: ServicesDep) -> Response:
    """Remove a schedule; tasks it already made stay."""
    services.store.schedules.delete(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
