"""Tables for the terminal: what `taskbox status`, `top` and `list` print."""

import os
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

STATUSES = ("PENDING", "SCHEDULED", "QUEUED", "RUNNING", "SUCCESS", "FAILED", "CANCELLED")  # fmt: skip
STATUS_STYLES = {"FAILED": "red", "SUCCESS": "green", "RUNNING": "cyan"}
PIPED_WIDTH = 200
ERROR_CHARS = 80


def make_console() -> Console:
    """A console for stdout; piped output keeps long ids whole instead of 80 columns."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return console


def status_view(stats: dict[str, Any], workers: list[dict[str, Any]]) -> Group:
    """Queues, counts by status and by task name, and live workers."""
    return Group(
        overview_table(stats),
        counts_table(stats),
        workers_table(workers),
    )


def top_view(
    stats: dict[str, Any],
    workers: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    now: datetime,
    note: str = "",
) -> Group:
    """What `taskbox top` shows: the status view and the latest failures."""
    heading = Text(f"taskbox top  {now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")
    heading.stylize("bold")
    parts: list[RenderableType] = [heading]
    if note:
        parts.append(Text(note, style="yellow"))
    parts += [status_view(stats, workers), failures_table(failures)]
    return Group(*parts)


def overview_table(stats: dict[str, Any]) -> Table:
    queues = stats["queues"]
    table = Table(
        title="Queues", box=box.SIMPLE, show_header=False, title_justify="left"
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("ready", str(queues["ready"]))
    table.add_row("delayed", str(queues["delayed"]))
    table.add_row("running", str(queues["running"]))
    table.add_row("oldest waiting", _seconds(stats["oldest_waiting_s"]))
    table.add_row("finished last minute", str(stats["finished_last_minute"]))
    table.add_row("workers", str(stats["workers"]))
    return table


def counts_table(stats: dict[str, Any]) -> Table:
    table = Table(title="Tasks", box=box.SIMPLE, title_justify="left")
    table.add_column("task")
    for status in STATUSES:
        table.add_column(status, justify="right", style=STATUS_STYLES.get(status))
    for name, counts in sorted(stats["by_name"].items()):
        table.add_row(name, *(str(counts.get(s, 0)) for s in STATUSES))
    table.add_row(
        "all", *(str(stats["counts"].get(s, 0)) for s in STATUSES), style="bold"
    )
    return table


def workers_table(workers: list[dict[str, Any]]) -> Table:
    table = Table(title="Workers", box=box.SIMPLE, title_justify="left")
    for column in ("id", "host", "pid", "started", "current task", "done", "last beat"):
        table.add_column(column, no_wrap=column in ("id", "current task"))
    for w in workers:
        table.add_row(
            w["id"],
            w["host"],
            str(w["pid"]),
            _time(w["started_at"]),
            w["current_task"] or "-",
            str(w["tasks_done"]),
            f"{w['last_beat_s_ago']:.1f} s ago",
        )
    if not workers:
        table.add_row("(no live workers)", *[""] * 6)
    return table


def failures_table(tasks: list[dict[str, Any]]) -> Table:
    table = Table(title="Recent failures", box=box.SIMPLE, title_justify="left")
    for column in ("id", "task", "attempts", "finished", "error"):
        table.add_column(column, no_wrap=column != "error")
    for task in tasks:
        table.add_row(
            task["id"],
            task["name"],
            str(task["attempts"]),
            _time(task["finished_at"]),
            _short(task["error"]),
        )
    if not tasks:
        table.add_row("(none)", "", "", "", "")
    return table


def tasks_table(tasks: list[dict[str, Any]]) -> Table:
    """One row per task: what `taskbox list` prints."""
    table = Table(box=box.SIMPLE)
    for column in ("id", "task", "status", "attempts", "run at", "finished", "error"):
        table.add_column(column, no_wrap=column != "error")
    for task in tasks:
        table.add_row(
            task["id"],
            task["name"],
            Text(task["status"], style=STATUS_STYLES.get(task["status"], "")),
            str(task["attempts"]),
            _time(task["run_at"]),
            _time(task["finished_at"]),
            _short(task["error"]),
        )
    return table


def _time(value: str | None) -> str:
    if not value:
        return "-"
    return f"{datetime.fromisoformat(value).astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _short(error: str | None) -> str:
    if not error:
        return ""
    line = error.strip().splitlines()[0] if error.strip() else ""
    return line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 1] + "…"
