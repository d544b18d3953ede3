"""Tables of the store and the shapes the API reads and answers."""

import enum
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import JSON, Column, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel


class Status(enum.StrEnum):
    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


WAITING = (Status.PENDING, Status.SCHEDULED, Status.QUEUED)
FINISHED = (Status.SUCCESS, Status.FAILED, Status.CANCELLED)


class AttemptStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    LOST = "LOST"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        return to_utc(value).replace(tzinfo=None)

    def process_result_value(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def to_utc(value: datetime) -> datetime:
    """Read a naive datetime as UTC, and convert an aware one to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _when(index: bool = False, nullable: bool = True) -> Any:
    return SQLField(
        default=None, sa_column=Column(UTCDateTime(), index=index, nullable=nullable)
    )


class Task(SQLModel, table=True):
    __tablename__ = "task"
    __table_args__ = (
        Index("ix_task_status_run_at", "status", "run_at"),
        Index("ix_task_status_updated", "status", "updated_at"),
        Index("ix_task_status_id", "status", "id"),
        Index("ix_task_name_id", "name", "id"),
        Index("ix_task_status_finished", "status", "finished_at"),
    )

    id: str = SQLField(sa_column=Column(String(32), primary_key=True))
    name: str = SQLField(sa_column=Column(String(200), nullable=False))
    payload: dict[str, Any] = SQLField(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    status: str = SQLField(sa_column=Column(String(16), nullable=False))
    priority: int = SQLField(default=0, sa_column=Column(Integer, nullable=False))
    run_at: datetime = _when(nullable=False)
    created_at: datetime = _when(nullable=False)
    updated_at: datetime = _when(nullable=False)
    started_at: datetime | None = _when()
    finished_at: datetime | None = _when()
    attempts: int = SQLField(default=0, sa_column=Column(Integer, nullable=False))
    max_retries: int = SQLField(default=3, sa_column=Column(Integer, nullable=False))
    # Attempts allowed before FAILED; a manual retry raises it so history stays.
    max_attempts: int = SQLField(default=4, sa_column=Column(Integer, nullable=False))
    timeout_s: float | None = None
    result: Any = SQLField(default=None, sa_column=Column(JSON, nullable=True))
    error: str | None = None
    idempotency_key: str | None = SQLField(
        default=None, sa_column=Column(String(200), unique=True, nullable=True)
    )
    worker: str | None = SQLField(default=None, sa_column=Column(String(200)))
    lease_expires_at: datetime | None = _when()


class Attempt(SQLModel, table=True):
    __tablename__ = "attempt"
    __table_args__ = (
        Index("ux_attempt_task_number", "task_id", "number", unique=True),
    )

    id: int | None = SQLField(default=None, primary_key=True)
    task_id: str = SQLField(
        sa_column=Column(
            String(32), ForeignKey("task.id", ondelete="CASCADE"), nullable=False
        )
    )
    number: int
    worker: str | None = None
    status: str = SQLField(sa_column=Column(String(16), nullable=False))
    started_at: datetime = _when(nullable=False)
    finished_at: datetime | None = _when()
    error: str | None = None
    traceback: str | None = None


class Schedule(SQLModel, table=True):
    __tablename__ = "schedule"
    __table_args__ = (Index("ix_schedule_enabled_next", "enabled", "next_run_at"),)

    name: str = SQLField(sa_column=Column(String(200), primary_key=True))
    task: str = SQLField(sa_column=Column(String(200), nullable=False))
    payload: dict[str, Any] = SQLField(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    cron: str | None = None
    interval_seconds: float | None = None
    timezone: str = "UTC"
    enabled: bool = True
    next_run_at: datetime | None = _when()
    last_run_at: datetime | None = _when()
    created_at: datetime = _when(nullable=False)
    updated_at: datetime = _when(nullable=False)


def check_json_object(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """Refuse NaN and Infinity, which JSON cannot carry."""
    if value is None:
        return None
    try:
        json.dumps(value, allow_nan=False)
    except ValueError as err:
        raise ValueError(
            "payload holds NaN or Infinity, which JSON cannot carry; send numbers"
        ) from err
    return value


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    payload: dict[str, Any] | None = None
    run_at: datetime | None = None
    # Strict: "5" or true is a mistake in the caller's JSON, not a number to guess at.
    max_retries: int | None = Field(default=None, ge=0, le=100, strict=True)
    priority: int = Field(default=0, ge=-100, le=100, strict=True)
    timeout: float | None = Field(default=None, gt=0, le=86400, allow_inf_nan=False)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)

    _payload = field_validator("payload")(check_json_object)

    @field_validator("run_at", mode="before")
    @classmethod
    def _run_at_is_text(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError(
                "run_at must be an ISO 8601 time, e.g. '2030-01-01T10:00:00Z'"
            )
        return value

    @field_validator("run_at")
    @classmethod
    def _run_at_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return to_utc(value)
        except OverflowError as err:
            raise ValueError(
                "run_at is outside the years 1..9999 once read as UTC; send a "
                "nearer time"
            ) from err


class TaskBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskCreate] = Field(min_length=1, max_length=1000)


class TaskPublic(BaseModel):
    id: str
    name: str
    payload: dict[str, Any]
    status: Status
    priority: int
    run_at: datetime
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    max_retries: int
    timeout: float | None
    result: Any
    error: str | None
    idempotency_key: str | None

    @classmethod
    def of(cls, task: Task) -> "TaskPublic":
        return cls(
            id=task.id,
            name=task.name,
            payload=task.payload,
            status=Status(task.status),
            priority=task.priority,
            run_at=task.run_at,
            created_at=task.created_at,
            updated_at=task.updated_at,
            started_at=task.started_at,
            finished_at=task.finished_at,
            attempts=task.attempts,
            max_retries=task.max_retries,
            timeout=task.timeout_s,
            result=task.result,
            error=task.error,
            idempotency_key=task.idempotency_key,
        )


class TaskPage(BaseModel):
    items: list[TaskPublic]
    next_cursor: str | None


class TaskItems(BaseModel):
    items: list[TaskPublic]


class AttemptPublic(BaseModel):
    number: int
    worker: str | None
    started_at: datetime
    finished_at: datetime | None
    status: AttemptStatus
    error: str | None
    traceback: str | None


# A schedule fires at most once a second: a shorter interval would only flood the
# store with tasks.
MIN_INTERVAL_S = 1.0


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    task: str = Field(min_length=1, max_length=200)
    payload: dict[str, Any] | None = None
    cron: str | None = Field(default=None, max_length=200)
    interval_seconds: float | None = Field(
        default=None, ge=MIN_INTERVAL_S, le=366 * 86400, allow_inf_nan=False
    )
    timezone: str = Field(default="UTC", max_length=100)
    enabled: bool = True

    _payload = field_validator("payload")(check_json_object)

    @model_validator(mode="after")
    def _one_rule(self) -> "ScheduleCreate":
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("give exactly one of cron and interval_seconds")
        return self


class ScheduleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str | None = Field(default=None, min_length=1, max_length=200)
    payload: dict[str, Any] | None = None
    cron: str | None = Field(default=None, max_length=200)
    interval_seconds: float | None = Field(
        default=None, ge=MIN_INTERVAL_S, le=366 * 86400, allow_inf_nan=False
    )
    timezone: str | None = Field(default=None, max_length=100)
    enabled: bool | None = None

    _payload = field_validator("payload")(check_json_object)


class SchedulePublic(BaseModel):
    name: str
    task: str
    payload: dict[str, Any]
    cron: str | None
    interval_seconds: float | None
    timezone: str
    enabled: bool
    next_run_at: datetime | None
    last_run_at: datetime | None

    @classmethod
    def of(cls, schedule: Schedule) -> "SchedulePublic":
        return cls.model_validate(schedule, from_attributes=True)
