"""Every SQL statement about schedules, including firing the due ones."""

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from taskbox.cron import next_fire
from taskbox.errors import Conflict, InvalidSchedule, NotFound
from taskbox.models import Schedule
from taskbox.store.engine import read, write
from taskbox.store.tasks import NewTask, new_task_row, tasks

log = logging.getLogger(__name__)

schedules = Schedule.__table__  # type: ignore[attr-defined]  # set by SQLModel


@dataclass
class Fired:
    """A task a schedule made."""

    schedule: str
    task_id: str
    task_name: str
    status: str
    run_at: datetime
    priority: int


class ScheduleStore:
    """Schedules in the store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, values: dict[str, Any], now: datetime) -> Schedule:
        """Write a new schedule; raise Conflict if its name is taken."""
        row = {
            **values,
            "payload": values.get("payload") or {},
            "created_at": now,
            "updated_at": now,
            "last_run_at": None,
            "next_run_at": _first_fire(values, now),
        }
        try:
            with write(self.engine) as conn:
                conn.execute(insert(schedules), [row])
        except IntegrityError as err:
            raise Conflict(
                f"a schedule named '{values['name']}' already exists; pick another "
                "name, or PATCH that one"
            ) from err
        return Schedule(**row)

    def get(self, name: str) -> Schedule:
        """Return one schedule, or raise NotFound."""
        with read(self.engine) as conn:
            row = conn.execute(
                select(schedules).where(schedules.c.name == name)
            ).first()
        if row is None:
            raise NotFound(f"no schedule named '{name}'")
        return Schedule(**row._mapping)

    def all(self) -> list[Schedule]:
        with read(self.engine) as conn:
            rows = conn.execute(select(schedules).order_by(schedules.c.name))
            return [Schedule(**row._mapping) for row in rows]

    def update(self, name: str, changes: dict[str, Any], now: datetime) -> Schedule:
        """Apply changes; the next fire time follows a new rule, timezone or enabling."""
        current = self.get(name)
        merged = {**current.model_dump(), **changes}
        if "cron" in changes and changes["cron"] is not None:
            merged["interval_seconds"] = None
        if "interval_seconds" in changes and changes["interval_seconds"] is not None:
            merged["cron"] = None

        rule_changed = {
            "cron",
            "interval_seconds",
            "timezone",
            "enabled",
        } & changes.keys()
        if rule_changed:
            merged["next_run_at"] = _first_fire(merged, now)
        merged["updated_at"] = now

        with write(self.engine) as conn:
            conn.execute(
                update(schedules)
                .where(schedules.c.name == name)
                .values({k: merged[k] for k in schedules.c.keys() if k != "name"})
            )
        return self.get(name)

    def delete(self, name: str) -> None:
        """Remove a schedule; its tasks already made stay."""
        with write(self.engine) as conn:
            result = conn.execute(delete(schedules).where(schedules.c.name == name))
        if not result.rowcount:
            raise NotFound(f"no schedule named '{name}'")

    def next_due_at(self) -> datetime | None:
        """When the earliest enabled schedule fires next."""
        with read(self.engine) as conn:
            next_run_at: datetime | None = conn.execute(
                select(schedules.c.next_run_at)
                .where(schedules.c.enabled.is_(True))
                .order_by(schedules.c.next_run_at)
                .limit(1)
            ).scalar()
        return next_run_at

    def _any_due(self, now: datetime) -> bool:
        with read(self.engine) as conn:
            row = conn.execute(
                select(schedules.c.name)
                .where(schedules.c.enabled.is_(True), schedules.c.next_run_at <= now)
                .limit(1)
            ).first()
        return row is not None

    def fire_due(self, now: datetime, limit: int = 100) -> list[Fired]:
        """Make a task for each due schedule and move its next fire time on.

        The next fire time is compare-and-set on the old one, so two schedulers
        running at once fire each due time exactly once; on PostgreSQL the due rows
        are also locked with SKIP LOCKED, so the schedulers split them.
        """
        fired: list[Fired] = []
        if not self._any_due(now):
            return fired  # the common case takes no write lock
        with write(self.engine) as conn:
            due = conn.execute(
                select(schedules)
                .where(schedules.c.enabled.is_(True), schedules.c.next_run_at <= now)
                .order_by(schedules.c.next_run_at)
                .limit(limit)
                # PostgreSQL: a second scheduler skips the rows this one is firing
                # instead of queueing behind them; SQLite ignores it.
                .with_for_update(skip_locked=True)
            ).all()
            for schedule in due:
                try:
                    following: datetime | None = next_fire(
                        schedule.cron,
                        schedule.interval_seconds,
                        schedule.timezone,
                        after=now,
                        previous=schedule.next_run_at,
                    )
                except InvalidSchedule as err:
                    # Only a rule stored before the API checked it this well can get
                    # here; it stops, rather than stopping every other schedule.
                    log.error(
                        "schedule %s stopped: %s; fix it with PATCH /schedules/%s",
                        schedule.name,
                        err,
                        schedule.name,
                        extra={"event": "schedule_stopped", "schedule": schedule.name},
                    )
                    following = None
                moved = conn.execute(
                    update(schedules)
                    .where(
                        schedules.c.name == schedule.name,
                        schedules.c.next_run_at == schedule.next_run_at,
                    )
                    .values(
                        next_run_at=following,
                        enabled=following is not None,
                        last_run_at=now,
                        updated_at=now,
                    )
                )
                if not moved.rowcount or following is None:
                    continue

                row = new_task_row(
                    NewTask(name=schedule.task, payload=schedule.payload, run_at=now),
                    now,
                )
                conn.execute(insert(tasks), [row])
                fired.append(
                    Fired(schedule.name, row["id"], row["name"], row["status"], now, 0)
                )
        return fired


def _first_fire(values: dict[str, Any], now: datetime) -> datetime | None:
    if not values.get("enabled", True):
        return None
    return next_fire(
        values.get("cron"),
        values.get("interval_seconds"),
        values["timezone"],
        after=now,
    )
