"""The errors taskbox raises; the API maps each to its HTTP status in one place."""


class TaskboxError(Exception):
    """Base of every error taskbox raises on purpose."""

    status_code = 500


class InvalidInput(TaskboxError):
    """A request does not fit what taskbox accepts."""

    status_code = 422


class UnknownTaskName(InvalidInput):
    """No task definition is registered under the name asked for."""


class PayloadMismatch(InvalidInput):
    """A payload does not fit the keyword arguments of its task's function."""


class InvalidSchedule(InvalidInput):
    """A schedule's cron expression, interval or timezone cannot be used."""


class NotFound(TaskboxError):
    """The task or schedule asked for does not exist."""

    status_code = 404


class Conflict(TaskboxError):
    """The request clashes with the current state of a task or schedule."""

    status_code = 409


class InvalidTransition(Conflict):
    """A task cannot move from its current status to the one asked for."""


class IdempotencyConflict(Conflict):
    """An idempotency key was reused with a different task name or payload."""


class LeaseLost(TaskboxError):
    """A worker's claim on a task ended before it could record the outcome."""


class StoreTooNew(TaskboxError):
    """The store's schema is newer than this version of taskbox."""


class NotJsonSerializable(TaskboxError):
    """A task returned a value that cannot be stored as JSON."""
