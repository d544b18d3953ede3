"""Every setting taskbox reads, from TASKBOX_* environment variables or a .env file."""

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TASKBOX_", env_file=".env", extra="ignore"
    )

    database_url: str | None = None
    data_dir: Path = Path("./data")
    redis_url: str | None = None
    redis_prefix: str = "taskbox:"
    task_modules: str = ""
    api_key: str | None = None
    lease_seconds: float = Field(default=30.0, gt=0)
    host: str = "0.0.0.0"
    port: int = 8000
    api_url: str | None = None
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    workers: int | None = Field(default=None, ge=1)
    shutdown_grace_seconds: float = Field(default=25.0, ge=0)
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "NORMAL"
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    log_payloads: bool = False
    retention_days: float = Field(default=7.0, ge=0)
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "taskbox@localhost"
    smtp_starttls: bool = False

    @property
    def store_url(self) -> str:
        """The SQLAlchemy URL of the store; a SQLite file in the data dir by default."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'taskbox.db').resolve()}"

    @property
    def redis_socket(self) -> Path:
        """Where `taskbox up` runs its own Redis when no TASKBOX_REDIS_URL is set."""
        return (self.data_dir / "redis.sock").resolve()

    @property
    def effective_redis_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        return f"unix://{self.redis_socket}"

    @property
    def client_api_url(self) -> str:
        if self.api_url:
            return self.api_url.rstrip("/")
        return f"http://127.0.0.1:{self.port}"

    @property
    def task_module_names(self) -> list[str]:
        return [name.strip() for name in self.task_modules.split(",") if name.strip()]


def load_settings() -> Settings:
    """Read the settings once, at a process's entry point."""
    return Settings()
