"""The API's group-commit writer: submissions of concurrent requests, one transaction.

Each request hands its checked tasks to one writer thread and awaits the answer. The
writer takes every submission waiting at that moment, writes them in one transaction,
hands the new tasks to Redis in one round trip, and only then answers each request.
So a request is still answered after its own commit, and a busy API pays for one
commit and one Redis round trip per group instead of per request.
"""

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass

from taskbox.api.service import hand_to_redis, log_submitted, tally_submitted
from taskbox.services import Services
from taskbox.store.tasks import Submission, Submitted

log = logging.getLogger(__name__)

# Enough to take a few full batches at once; the queue behind a group waits at most
# one group's commit.
MAX_GROUP_TASKS = 4000


@dataclass
class _Request:
    submission: Submission
    loop: asyncio.AbstractEventLoop
    answer: "asyncio.Future[list[Submitted]]"


class Submitter:
    """One writer thread that commits the submissions of concurrent requests together."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="submitter", daemon=True)
        self._thread.start()

    async def submit(self, submission: Submission) -> list[Submitted]:
        """Write one submission; returns once it is committed and handed to Redis.

        Raises what TaskStore.submit raises (IdempotencyConflict, a store error).
        """
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[Submitted]] = loop.create_future()
        self._requests.put(_Request(submission, loop, answer))
        return await answer

    def close(self) -> None:
        """Answer what is queued, then stop the writer thread."""
        self._requests.put(None)
        self._thread.join()

    # -- the writer thread ------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._requests.get()
            if first is None:
                return
            group = [first]
            size = len(first.submission[0])
            while size < MAX_GROUP_TASKS:
                try:
                    request = self._requests.get_nowait()
                except queue.Empty:
                    break
                if request is None:
                    self._requests.put(None)  # stop once this group is answered
                    break
                group.append(request)
                size += len(request.submission[0])
            self._write(group)

    def _write(self, group: list[_Request]) -> None:
        try:
            answers = self.services.store.tasks.submit_many(
                [r.submission for r in group]
            )
        except Exception as err:
            if len(group) == 1:
                _answer(group[0], err)
                return
            # One submission spoilt the group (a conflicting idempotency key, say):
            # write each on its own, so only that one fails.
            for request in group:
                self._write([request])
            return

        try:
            self._hand_over(answers)
        except Exception as err:
            # Committed, but the PENDING mark failed too: answer as the store error
            # it is; the scheduler finds the tasks in the store.
            for request in group:
                _answer(request, err)
            return
        for request, submitted in zip(group, answers, strict=True):
            _answer(request, submitted)

    def _hand_over(self, answers: list[list[Submitted]]) -> None:
        created = [s.task for submitted in answers for s in submitted if s.created]
        if not created:
            return
        now = max(s.task.created_at for submitted in answers for s in submitted)
        hand_to_redis(self.services, created, now, tally_submitted(created))
        for task in created:
            log_submitted(self.services, task)


def _answer(request: _Request, outcome: list[Submitted] | BaseException) -> None:
    request.loop.call_soon_threadsafe(_settle, request.answer, outcome)


def _settle(
    answer: "asyncio.Future[list[Submitted]]",
    outcome: list[Submitted] | BaseException,
) -> None:
    if answer.done():
        return  # the client went away and the request was cancelled
    if isinstance(outcome, BaseException):
        answer.set_exception(outcome)
    else:
        answer.set_result(outcome)
