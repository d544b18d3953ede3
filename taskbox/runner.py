"""The worker's child process, which runs task functions.

A thread cannot be stopped, so each worker runs its attempts in a long-lived child
process that it kills and replaces when an attempt overruns its timeout. The child
dies with its worker, so no function goes on running once nobody waits for it.
"""

import asyncio
import json
import signal
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from taskbox.parent import die_with_parent
from taskbox.registry import load_registry

TRACEBACK_LINES = 30


@dataclass
class Reply:
    """What the child sends back for one attempt."""

    ok: bool
    result_json: str | None = None
    error: str | None = None
    traceback: str | None = None


def run_child(conn: Connection, module_names: list[str]) -> None:
    """Entry point of the child: run each requested task until the pipe closes."""
    die_with_parent(signal.SIGKILL)
    # The worker decides when its child stops; Ctrl-C in a terminal reaches the
    # whole process group and must not kill an attempt behind the worker's back.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    registry = load_registry(module_names)
    loop = asyncio.new_event_loop()
    conn.send("ready")
    while True:
        try:
            name, payload = conn.recv()
        except EOFError:
            return
        conn.send(_run(registry.get, loop, name, payload))


def _run(
    lookup: Any, loop: asyncio.AbstractEventLoop, name: str, payload: dict[str, Any]
) -> Reply:
    try:
        definition = lookup(name)
        if definition.is_async:
            result = loop.run_until_complete(definition.fn(**payload))
        else:
            result = definition.fn(**payload)
    except BaseException as err:  # any failure of user code fails the attempt
        return Reply(
            ok=False,
            error=f"{type(err).__name__}: {err}",
            traceback=_trimmed_traceback(err),
        )

    try:
        return Reply(ok=True, result_json=json.dumps(result, allow_nan=False))
    except (TypeError, ValueError) as err:
        return Reply(
            ok=False,
            error=(
                f"NotJsonSerializable: task '{name}' returned a "
                f"{type(result).__name__} that JSON cannot carry ({err}); return "
                "dicts, lists, strings, finite numbers, booleans or None"
            ),
        )


def _trimmed_traceback(err: BaseException) -> str:
    lines = traceback.format_exception(err)
    text = "".join(lines)
    tail = text.splitlines()[-TRACEBACK_LINES:]
    return "\n".join(tail)
