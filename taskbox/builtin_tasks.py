"""Tasks every taskbox has: echo, sleep, http_request and send_email."""

import asyncio
import smtplib
from email.message import EmailMessage
from typing import Any

import httpx

from taskbox.registry import task
from taskbox.settings import load_settings


@task(name="echo", max_retries=0)
def echo(**payload: Any) -> dict[str, Any]:
    """Return the payload as the result."""
    return payload


@task(name="sleep", max_retries=0, timeout=86400)
async def sleep(seconds: float = 1.0) -> dict[str, float]:
    """Wait, then return how long."""
    await asyncio.sleep(seconds)
    return {"slept": seconds}


class HttpError(Exception):
    """A webhook answered with a server error."""


@task(name="http_request", max_retries=3, timeout=60)
def http_request(
    url: str,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    json: Any = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Call a webhook; a 5xx answer or a network error fails the attempt."""
    response = httpx.request(
        method.upper(), url, headers=headers, json=json, timeout=timeout
    )
    if response.status_code >= 500:
        raise HttpError(
            f"{method.upper()} {_redacted(url)} answered {response.status_code}"
        )
    return {
        "status_code": response.status_code,
        "body": response.text[:10_000],
    }


def _redacted(url: str) -> str:
    """The URL without credentials or query string, which often carry secrets.

    The error is kept on the task and logged, where secrets must not go.
    """
    parsed = httpx.URL(url)
    return str(
        parsed.copy_with(username=None, password=None, query=None, fragment=None)
    )


@task(name="send_email", max_retries=3, timeout=60)
def send_email(to: str, subject: str = "", body: str = "") -> dict[str, str]:
    """Send a plain-text email through the SMTP server in TASKBOX_SMTP_* settings."""
    settings = load_settings()
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)

    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password or "")
        smtp.send_message(message)
    return {"to": to}
