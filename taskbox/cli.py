"""The `taskbox` command: run the appliance or one component, and talk to the API."""

import json
import os
import signal
import time
from datetime import UTC, datetime
from types import FrameType
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError

from taskbox import logs
from taskbox.parent import die_with_parent
from taskbox.settings import Settings, load_settings

app = typer.Typer(
    help="taskbox: a durable task scheduler. Submit work over REST; it runs on time.",
    no_args_is_help=True,
    add_completion=False,
)


def _setup() -> Settings:
    if os.environ.get("SUPERVISOR_ENABLED"):
        # Under `taskbox up`: if supervisord is killed outright, go with it rather
        # than linger as an orphan that a second `taskbox up` would collide with.
        die_with_parent(signal.SIGTERM)
    try:
        settings = load_settings()
    except ValidationError as err:
        problems = "; ".join(
            f"TASKBOX_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in err.errors()
        )
        typer.echo(f"error: bad setting: {problems}", err=True)
        raise typer.Exit(2) from err
    logs.configure(settings.log_format, settings.log_level)
    return settings


def _prepare(settings: Settings, kind: str) -> None:
    """Wait for the store and migrate it; exit with a clear message if it is too new."""
    from taskbox.errors import StoreTooNew
    from taskbox.services import prepare_store

    try:
        prepare_store(settings, kind)
    except StoreTooNew as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(3) from err


def _on_stop(stop: Any) -> None:
    """Call stop() on SIGTERM or SIGINT."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# -- running ------------------------------------------------------------------


@app.command()
def up() -> None:
    """Run the whole appliance in the foreground under supervisord.

    Starts a Redis (unless TASKBOX_REDIS_URL is set), the API, the scheduler and the
    workers; their count is numprocs in supervisord.conf or TASKBOX_WORKERS.
    Ctrl-C or SIGTERM stops every process cleanly.
    """
    from taskbox.appliance import AlreadyRunning, start_appliance

    settings = _setup()
    _prepare(settings, "cli")
    try:
        start_appliance(settings)
    except AlreadyRunning as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    except ImportError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err


@app.command()
def api() -> None:
    """Run the REST API alone (uvicorn), on TASKBOX_HOST:TASKBOX_PORT."""
    import uvicorn

    from taskbox.api.app import create_app

    settings = _setup()
    _prepare(settings, "api")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@app.command()
def scheduler() -> None:
    """Run a scheduler alone: moves due tasks, fires schedules, takes back lost leases."""
    from taskbox.scheduler import Scheduler
    from taskbox.services import open_services

    settings = _setup()
    _prepare(settings, "scheduler")
    services = open_services(settings, "scheduler")
    loop = Scheduler(settings, services.store, services.queue)
    _on_stop(loop.stop)
    loop.run()
    services.close()


@app.command()
def worker(
    burst: Annotated[
        bool,
        typer.Option(help="Stop once no task is ready instead of waiting for more."),
    ] = False,
) -> None:
    """Run one worker alone: claims ready tasks and runs them one at a time."""
    from taskbox.services import open_services
    from taskbox.worker import Worker

    settings = _setup()
    _prepare(settings, "worker")
    services = open_services(settings, "worker")
    loop = Worker(settings, services.store, services.queue, services.registry)
    _on_stop(lambda: loop.stop(settings.shutdown_grace_seconds))
    loop.run(burst=burst)
    services.close()


@app.command()
def migrate() -> None:
    """Bring the store's schema up to date (every component also does this at start)."""
    from taskbox.errors import StoreTooNew
    from taskbox.migrate import migrate as apply
    from taskbox.store import open_store

    settings = _setup()
    store = open_store(settings.store_url)
    try:
        head = apply(store.engine)
    except StoreTooNew as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(3) from err
    finally:
        store.close()
    typer.echo(f"store is at schema {head}")


@app.command("redis", hidden=True)
def run_redis() -> None:
    """Run the bundled Redis on a unix socket in the data dir (used by `taskbox up`)."""
    from taskbox.appliance import exec_redis

    die_with_parent(signal.SIGTERM)
    exec_redis(load_settings())


# -- client -------------------------------------------------------------------


def _client(settings: Settings) -> httpx.Client:
    headers = {}
    if settings.api_key:
        headers["Authorization"] = f"Bearer {settings.api_key}"
    return httpx.Client(base_url=settings.client_api_url, headers=headers, timeout=30)


def _call(method: str, path: str, **kwargs: Any) -> Any:
    settings = load_settings()
    try:
        with _client(settings) as client:
            response = client.request(method, path, **kwargs)
    except httpx.TransportError as err:
        typer.echo(
            f"error: cannot reach the taskbox API at {settings.client_api_url} ({err}); "
            "start it with 'taskbox up', or set TASKBOX_API_URL",
            err=True,
        )
        raise typer.Exit(2) from err
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        if not isinstance(detail, str):
            detail = json.dumps(detail)
        typer.echo(f"error: {response.status_code}: {detail}", err=True)
        raise typer.Exit(1)
    return response.json() if response.content else None


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


@app.command()
def submit(
    name: Annotated[str, typer.Argument(help="Task name, e.g. echo.")],
    payload: Annotated[
        str, typer.Option(help="The task's keyword arguments as a JSON object.")
    ] = "{}",
    run_at: Annotated[
        str | None, typer.Option(help="When to run, ISO 8601; naive times are UTC.")
    ] = None,
    priority: Annotated[int, typer.Option(help="-100..100; higher runs first.")] = 0,
    max_retries: Annotated[int | None, typer.Option(help="0..100.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per attempt.")] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Submitting the same key again returns the first task."),
    ] = None,
) -> None:
    """Submit a task through the API and print it."""
    try:
        parsed = json.loads(payload)
    except ValueError as err:
        typer.echo(
            f'error: --payload is not valid JSON ({err}); e.g. \'{{"msg": "hi"}}\'',
            err=True,
        )
        raise typer.Exit(2) from err
    body: dict[str, Any] = {"name": name, "payload": parsed, "priority": priority}
    for key, value in (
        ("run_at", run_at),
        ("max_retries", max_retries),
        ("timeout", timeout),
        ("idempotency_key", idempotency_key),
    ):
        if value is not None:
            body[key] = value
    _print(_call("POST", "/tasks", json=body))


@app.command()
def get(task_id: Annotated[str, typer.Argument(help="The task's id.")]) -> None:
    """Print one task."""
    _print(_call("GET", f"/tasks/{task_id}"))


# -- operating ----------------------------------------------------------------


@app.command()
def status(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print /stats and /workers as JSON.")
    ] = False,
) -> None:
    """Print queues, counts by status and task name, and live workers."""
    from taskbox.console import make_console, status_view

    stats, workers = _call("GET", "/stats"), _call("GET", "/workers")
    if as_json:
        _print({"stats": stats, "workers": workers})
        return
    make_console().print(status_view(stats, workers))


@app.command()
def top(
    interval: Annotated[
        float, typer.Option(min=0.2, help="Seconds between refreshes.")
    ] = 2.0,
    once: Annotated[
        bool, typer.Option("--once", help="Print one view and exit.")
    ] = False,
) -> None:
    """Show queues, workers and recent failures, refreshed until Ctrl-C."""
    from rich.live import Live

    from taskbox.console import make_console

    console = make_console()
    feed = _TopFeed()
    if once:
        console.print(feed.view())
        return
    with Live(feed.view(), console=console, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(feed.view(), refresh=True)
        except KeyboardInterrupt:
            pass


class _TopFeed:
    """Fetches what `taskbox top` shows; keeps the last answer for when the API is away."""

    def __init__(self) -> None:
        self.last: tuple[Any, Any, Any] | None = None

    def view(self) -> Any:
        from taskbox.console import top_view

        now = datetime.now(UTC)
        try:
            stats, workers = _call("GET", "/stats"), _call("GET", "/workers")
            failed = _call("GET", "/tasks", params={"status": "FAILED", "limit": 10})
        except typer.Exit:
            if self.last is None:
                raise
            note = "the API did not answer; showing the last view, retrying"
            return top_view(*self.last, now=now, note=note)
        self.last = (stats, workers, failed["items"])
        return top_view(*self.last, now=now)


@app.command("list")
def list_tasks(
    status: Annotated[
        str | None, typer.Option(help="Only this status, e.g. FAILED.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Only this task name.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    cursor: Annotated[
        str | None, typer.Option(help="next_cursor of the previous page.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the page as JSON.")
    ] = False,
) -> None:
    """List tasks, newest first."""
    from taskbox.console import make_console, tasks_table

    params: dict[str, Any] = {"limit": limit}
    for key, value in (("status", status), ("name", name), ("cursor", cursor)):
        if value is not None:
            params[key] = value.upper() if key == "status" else value
    page = _call("GET", "/tasks", params=params)
    if as_json:
        _print(page)
        return
    console = make_console()
    console.print(tasks_table(page["items"]))
    if page["next_cursor"]:
        console.print(f"more: taskbox list --cursor {page['next_cursor']}")


@app.command()
def cancel(task_id: Annotated[str, typer.Argument(help="The task's id.")]) -> None:
    """Cancel a task that has not started, and print it."""
    _print(_call("POST", f"/tasks/{task_id}/cancel"))


@app.command()
def retry(task_id: Annotated[str, typer.Argument(help="The task's id.")]) -> None:
    """Queue a FAILED or CANCELLED task again, and print it."""
    _print(_call("POST", f"/tasks/{task_id}/retry"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
