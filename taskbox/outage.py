"""Riding out a lost connection to the store or Redis: log once, back off, go on."""

import logging
from typing import Any

MAX_BACKOFF_S = 5.0


class Outage:
    """Logs a lost connection once per outage, not once per loop, and paces retries."""

    def __init__(self, logger: logging.Logger, who: str, extra: dict[str, Any]) -> None:
        self.log = logger
        self.who = who
        self.extra = extra
        self.failures = 0

    def hit(self, err: Exception) -> float:
        """Note a failure; return how long to wait before trying again."""
        if self.failures == 0:
            self.log.warning(
                "%s lost its connection to the store or Redis (%s); retrying",
                self.who,
                err,
                extra={**self.extra, "event": "connection_lost"},
            )
        self.failures += 1
        return min(MAX_BACKOFF_S, 0.1 * 2.0 ** min(self.failures, 10))

    def over(self) -> None:
        """Note a success; log the end of an outage if there was one."""
        if self.failures:
            self.log.info(
                "%s is connected again after %d failed tries",
                self.who,
                self.failures,
                extra={**self.extra, "event": "connection_restored"},
            )
        self.failures = 0
