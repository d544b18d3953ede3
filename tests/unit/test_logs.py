"""The two log formats: text with key=value extras, and JSON lines."""

import json
import logging

from taskbox.logs import JsonFormatter, TextFormatter


def record(**extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord(
        {"name": "taskbox.worker", "levelname": "WARNING", "msg": "attempt %d failed"}
    )
    made.args = (2,)
    made.__dict__.update(extra)
    return made


def test_text_line_appends_extras_and_quotes_values_with_spaces() -> None:
    line = TextFormatter().format(
        record(event="retry_scheduled", task_id="01ab", error="ValueError: disk full")
    )

    assert "WARNING taskbox.worker attempt 2 failed" in line
    assert line.endswith(
        'event=retry_scheduled task_id=01ab error="ValueError: disk full"'
    )


def test_json_line_has_time_level_logger_message_and_extras() -> None:
    entry = json.loads(
        JsonFormatter().format(record(event="task_failed", attempt=2, worker="h:1:ab"))
    )

    assert entry["level"] == "WARNING"
    assert entry["logger"] == "taskbox.worker"
    assert entry["message"] == "attempt 2 failed"
    assert (entry["event"], entry["attempt"], entry["worker"]) == (
        "task_failed",
        2,
        "h:1:ab",
    )
    assert entry["time"].endswith("+00:00")


def test_uvicorn_colour_copy_of_the_message_is_left_out() -> None:
    colour = "Started server process [\x1b[36m%d\x1b[0m]"

    assert "color_message" not in TextFormatter().format(record(color_message=colour))
    assert "color_message" not in json.loads(
        JsonFormatter().format(record(color_message=colour))
    )
