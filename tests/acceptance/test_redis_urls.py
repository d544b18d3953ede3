"""TASKBOX_REDIS_URL forms a shared Redis needs: a password, a database number, TLS."""

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import free_port, redis_binary

PASSWORD = "s3cret-pass"


class SecuredRedis:
    """A redis-server that wants a password, optionally over TLS only."""

    def __init__(self, tmp_path: Path, tls: bool) -> None:
        self.port = free_port()
        args = ["--port", str(self.port), "--requirepass", PASSWORD]
        self.client_kwargs: dict[str, Any] = {}
        self.scheme = "redis"
        if tls:
            certs = make_certs(tmp_path / "certs")
            args = [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(certs["server.crt"]),
                "--tls-key-file",
                str(certs["server.key"]),
                "--tls-ca-cert-file",
                str(certs["ca.crt"]),
                "--tls-auth-clients",
                "no",
                "--requirepass",
                PASSWORD,
            ]
            self.ca = certs["ca.crt"]
            self.scheme = "rediss"
        self.process = subprocess.Popen(
            [redis_binary(), *args, "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )

    def url(self, db: int) -> str:
        url = f"{self.scheme}://:{PASSWORD}@127.0.0.1:{self.port}/{db}"
        if self.scheme == "rediss":
            url += f"?ssl_ca_certs={self.ca}"
        return url

    def wait(self) -> None:
        client = redis.Redis.from_url(self.url(0))
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError as err:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    output = self.process.stdout.read() if self.process.stdout else b""
                    raise AssertionError(
                        f"redis-server did not start: {err}\n{output.decode()}"
                    ) from err
                time.sleep(0.05)
            finally:
                client.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.communicate()


def make_certs(folder: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with openssl."""
    folder.mkdir(parents=True)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    steps = [
        "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=taskbox-test-ca "
        "-keyout ca.key -out ca.crt",
        "req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key "
        "-out server.csr",
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 "
        "-extfile san.ext -out server.crt",
    ]
    for step in steps:
        subprocess.run(
            ["openssl", *step.split()], cwd=folder, check=True, capture_output=True
        )
    return {name: folder / name for name in ("ca.crt", "server.crt", "server.key")}


@pytest.fixture(params=["password", "tls"])
def secured_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    server = SecuredRedis(tmp_path, tls=request.param == "tls")
    server.wait()
    yield server
    server.kill()


def test_appliance_runs_on_a_redis_with_password_db_number_and_tls(
    make_appliance: Any, secured_redis: SecuredRedis, tmp_path: Path
) -> None:
    appliance = make_appliance(redis_url=secured_redis.url(db=5))
    appliance.start_all(workers=1)
    run_at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()

    now = appliance.submit("add", {"a": 2, "b": 2})
    later = appliance.submit("add", {"a": 3}, run_at=run_at)

    assert appliance.wait_for(now["id"])["result"] == {"sum": 4}
    assert appliance.wait_for(later["id"])["result"] == {"sum": 3}
    assert appliance.client.get("/readyz").status_code == 200
    used = redis.Redis.from_url(secured_redis.url(db=5))
    default = redis.Redis.from_url(secured_redis.url(db=0))
    assert used.zcard(f"{appliance.env['TASKBOX_REDIS_PREFIX']}workers") == 1
    assert default.dbsize() == 0
    used.close()
    default.close()


def test_wrong_redis_password_is_logged_once_and_the_scheduler_waits(
    make_appliance: Any, secured_redis: SecuredRedis
) -> None:
    url = secured_redis.url(db=0).replace(PASSWORD, "wrong")
    appliance = make_appliance(redis_url=url)
    appliance.start("scheduler", "scheduler")

    deadline = time.monotonic() + 20
    while "event=connection_lost" not in appliance.logs("scheduler"):
        assert time.monotonic() < deadline, appliance.logs("scheduler")
        time.sleep(0.1)
    time.sleep(2)  # several loops of the scheduler

    log = appliance.logs("scheduler")
    assert appliance.processes["scheduler"].poll() is None
    assert log.count("event=connection_lost") == 1
    assert "invalid username-password" in log.lower() or "auth" in log.lower()
