"""Every Redis key and command: the delayed queue, the ready queues, in-flight lists.

Redis carries task ids only; the store holds everything else. Keys, all under
TASKBOX_REDIS_PREFIX (shown here as P):

| key                  | type   | holds                                         | written by        |
|----------------------|--------|-----------------------------------------------|-------------------|
| P delayed            | zset   | ids of SCHEDULED tasks, scored by run_at (ms) | api, scheduler    |
| P ready:{priority}   | list   | ids of QUEUED tasks, one list per priority    | api, scheduler    |
| P ready:levels       | zset   | priorities whose ready list is not empty      | enqueue and claim |
| P ready:signal       | list   | tokens that wake idle workers                 | enqueue and claim |
| P inflight:{worker}  | list   | ids a worker claimed and has not finished     | worker            |
| P workers            | zset   | live worker ids, scored by last heartbeat     | worker, scheduler |
| P worker:{worker}    | hash   | a worker's host, pid, start, current task     | worker            |
| P scheduler:wakeup   | list   | a nudge: a new task is the earliest delayed   | api, scheduler    |
| P epoch              | string | present while Redis holds what the store says | scheduler         |
| P metrics:{metric}   | hash   | event counters and histogram buckets          | api, scheduler,   |
|                      |        | (see metrics.py); read by /metrics            | worker            |
| P rebuilding         | string | a scheduler is rebuilding; expires if it dies | scheduler         |
"""

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from taskbox.metrics import Tally

# A few tokens per idle worker is plenty; the cap keeps a deep queue from piling
# up one token per task.
SIGNAL_CAP = 1024

ENQUEUE_READY = f"""
local prefix = ARGV[1]
local pushed = 0
for i = 2, #ARGV, 2 do
  local priority = ARGV[i + 1]
  redis.call('LPUSH', prefix .. 'ready:' .. priority, ARGV[i])
  redis.call('ZADD', KEYS[1], priority, priority)
  pushed = pushed + 1
end
local have = redis.call('LLEN', KEYS[2])
local tokens = math.min(pushed, {SIGNAL_CAP} - have)
for i = 1, tokens do
  redis.call('RPUSH', KEYS[2], '1')
end
return pushed
"""

# Moves ids from the highest-priority ready lists into the worker's in-flight list
# in one step, so an id is always in exactly one list. A worker asking for several
# gets at most half of what is ready, so a short queue is still shared between
# workers. When nothing is ready the wake-up tokens are dropped: a worker that then
# blocks is woken by the next push.
CLAIM = """
local prefix, wanted = ARGV[1], tonumber(ARGV[2])
local out = {}
local levels = redis.call('ZREVRANGE', KEYS[1], 0, -1)
if wanted > 1 then
  local ready = 0
  for _, level in ipairs(levels) do
    ready = ready + redis.call('LLEN', prefix .. 'ready:' .. level)
  end
  wanted = math.max(1, math.min(wanted, math.floor(ready / 2)))
end
for _, level in ipairs(levels) do
  local ready = prefix .. 'ready:' .. level
  while #out < wanted do
    local id = redis.call('RPOPLPUSH', ready, KEYS[3])
    if not id then break end
    out[#out + 1] = id
  end
  if redis.call('LLEN', ready) == 0 then
    redis.call('ZREM', KEYS[1], level)
  end
  if #out >= wanted then break end
end
if #out == 0 then
  redis.call('DEL', KEYS[2])
end
return out
"""

# Takes due ids off the delayed queue in one step, so two schedulers never both
# take the same id.
TAKE_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #ids > 0 then
  redis.call('ZREM', KEYS[1], unpack(ids))
end
return ids
"""

# Adds to the delayed queue and nudges the scheduler when the new id is the
# earliest, so it can shorten its sleep.
ADD_DELAYED = """
local nudge = false
for i = 1, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
end
local head = redis.call('ZRANGE', KEYS[1], 0, 0)
for i = 1, #ARGV, 2 do
  if head[1] == ARGV[i] then nudge = true end
end
if nudge and redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('RPUSH', KEYS[2], '1')
end
return nudge and 1 or 0
"""

# Scores a worker's heartbeat with Redis's own clock, so workers on hosts whose
# clocks disagree are judged alike.
BEAT = """
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], now[1] + now[2] / 1000000, ARGV[1])
return 1
"""

# Returns the ids among ARGV that are in no ready list, in-flight list or the
# delayed queue; used to find tasks the store says are waiting but Redis lost.
FIND_MISSING = """
local wanted = {}
for _, id in ipairs(ARGV) do wanted[id] = true end
for _, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'zset' then
    for _, id in ipairs(ARGV) do
      if wanted[id] and redis.call('ZSCORE', key, id) then wanted[id] = nil end
    end
  elseif kind == 'list' then
    local n = redis.call('LLEN', key)
    local i = 0
    while i < n do
      for _, id in ipairs(redis.call('LRANGE', key, i, i + 999)) do
        wanted[id] = nil
      end
      i = i + 1000
    end
  end
end
local missing = {}
for _, id in ipairs(ARGV) do
  if wanted[id] then missing[#missing + 1] = id; wanted[id] = nil end
end
return missing
"""


def connect(url: str, timeout_s: float = 10.0) -> redis.Redis:
    """A client for the Redis at url (redis://, rediss:// or unix://).

    timeout_s bounds every answer; it must exceed the 1 s blocking waits of the
    scheduler and workers.
    """
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=min(5.0, timeout_s),
        socket_timeout=timeout_s,
        health_check_interval=30,
    )


def to_ms(epoch_s: float) -> float:
    """Milliseconds to the microsecond, rounded up, so a task's score is never before
    its run_at; whole milliseconds would make a due task up to 1 ms late."""
    return math.ceil(epoch_s * 1_000_000) / 1000


class Queue:
    """The Redis side of taskbox, under one key prefix."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        # redis-py types every answer as a union of sync, async, bytes and str
        # results; with decode_responses=True they are plain str, list and float.
        self.client: Any = client
        self.prefix = prefix
        self.delayed_key = f"{prefix}delayed"
        self.levels_key = f"{prefix}ready:levels"
        self.signal_key = f"{prefix}ready:signal"
        self.workers_key = f"{prefix}workers"
        self.wakeup_key = f"{prefix}scheduler:wakeup"
        self.epoch_key = f"{prefix}epoch"
        self.rebuilding_key = f"{prefix}rebuilding"
        self._enqueue_ready = client.register_script(ENQUEUE_READY)
        self._claim = client.register_script(CLAIM)
        self._take_due = client.register_script(TAKE_DUE)
        self._add_delayed = client.register_script(ADD_DELAYED)
        self._find_missing = client.register_script(FIND_MISSING)
        self._beat = client.register_script(BEAT)

    def ready_key(self, priority: int) -> str:
        return f"{self.prefix}ready:{priority}"

    def inflight_key(self, worker: str) -> str:
        return f"{self.prefix}inflight:{worker}"

    def worker_key(self, worker: str) -> str:
        return f"{self.prefix}worker:{worker}"

    # -- enqueue ---------------------------------------------------------------

    def enqueue(
        self,
        ready: Sequence[tuple[str, int]] = (),
        delayed: Sequence[tuple[str, float]] = (),
        tally: Tally | None = None,
    ) -> None:
        """Put ids on the ready queues (with priority) and the delayed queue (with run_at).

        The scripts and a tally's metric increments go in one round trip.
        """
        calls: list[tuple[Any, list[str], list[Any]]] = []
        if ready:
            args: list[Any] = [self.prefix]
            for task_id, priority in ready:
                args += [task_id, priority]
            calls.append(
                (self._enqueue_ready, [self.levels_key, self.signal_key], args)
            )
        if delayed:
            args = []
            for task_id, run_at_s in delayed:
                args += [task_id, to_ms(run_at_s)]
            calls.append((self._add_delayed, [self.delayed_key, self.wakeup_key], args))
        self._run_scripts(calls, tally)

    def _run_scripts(
        self, calls: list[tuple[Any, list[str], list[Any]]], tally: Tally | None
    ) -> None:
        """Run scripts by their hash in one pipeline, loading them if Redis lost them.

        redis-py's own pipelined script call would first ask Redis whether each
        script exists: one more round trip every time.
        """
        if not calls and not tally:
            return
        pipe = self.client.pipeline(transaction=False)
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        if tally:
            tally.add_to(pipe, self.prefix)
        try:
            pipe.execute()
        except redis.exceptions.NoScriptError:
            # A restarted or flushed Redis forgot the scripts; the tally went through.
            for script, keys, args in calls:
                script(keys=keys, args=args)

    def remove(self, task_id: str, priority: int, tally: Tally | None = None) -> None:
        """Take an id off the delayed and ready queues (a cancelled task)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zrem(self.delayed_key, task_id)
        pipe.lrem(self.ready_key(priority), 0, task_id)
        if tally:
            tally.add_to(pipe, self.prefix)
        pipe.execute()

    def record(self, tally: Tally) -> None:
        """Send a tally's metric increments on their own, when no other call is due."""
        if tally:
            pipe = self.client.pipeline(transaction=False)
            tally.add_to(pipe, self.prefix)
            pipe.execute()

    # -- workers -----------------------------------------------------------------

    def claim(self, worker: str, count: int = 1) -> list[str]:
        """Move up to `count` ready ids, highest priority first, into the worker's in-flight list."""
        ids: list[str] = self._claim(
            keys=[self.levels_key, self.signal_key, self.inflight_key(worker)],
            args=[self.prefix, count],
        )
        return ids

    def wait_for_work(self, timeout_s: float) -> bool:
        """Block until an enqueue signals new work or the timeout passes."""
        return self.client.blpop([self.signal_key], timeout=timeout_s) is not None

    def ack(
        self, worker: str, task_ids: Iterable[str], tally: Tally | None = None
    ) -> None:
        """Drop finished ids from the worker's in-flight list, sending a tally along."""
        pipe = self.client.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.lrem(self.inflight_key(worker), 1, task_id)
        if tally:
            tally.add_to(pipe, self.prefix)
        pipe.execute()

    def inflight(self, worker: str) -> list[str]:
        ids: list[str] = self.client.lrange(self.inflight_key(worker), 0, -1)
        return ids

    def inflight_workers(self) -> list[str]:
        """Workers that have an in-flight list."""
        start = len(self.inflight_key(""))
        return [
            key[start:]
            for key in self.client.scan_iter(match=self.inflight_key("*"), count=500)
        ]

    def drop_inflight(self, worker: str) -> None:
        self.client.delete(self.inflight_key(worker))

    def beat(
        self, worker: str, info: dict[str, str | int | float], ttl_s: float
    ) -> None:
        """Record a worker's heartbeat, on Redis's clock, and what it is doing."""
        pipe = self.client.pipeline(transaction=False)
        pipe.evalsha(self._beat.sha, 1, self.workers_key, worker)
        pipe.hset(self.worker_key(worker), mapping=info)
        pipe.expire(self.worker_key(worker), int(ttl_s) + 1)
        try:
            pipe.execute()
        except redis.exceptions.NoScriptError:
            self._beat(keys=[self.workers_key], args=[worker])

    def forget_worker(self, worker: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.zrem(self.workers_key, worker)
        pipe.delete(self.worker_key(worker))
        pipe.execute()

    def server_time_s(self) -> float:
        """Redis's clock, which every worker's heartbeat is scored by."""
        seconds, micros = self.client.time()
        return float(seconds) + float(micros) / 1_000_000

    def live_workers(self, window_s: float) -> dict[str, dict[str, str]]:
        """Workers that beat within the last window_s seconds, with what they report."""
        since_s = self.server_time_s() - window_s
        ids = self.client.zrangebyscore(self.workers_key, since_s, "+inf")
        pipe = self.client.pipeline(transaction=False)
        for worker in ids:
            pipe.hgetall(self.worker_key(worker))
        infos = pipe.execute()
        return {worker: info for worker, info in zip(ids, infos, strict=True) if info}

    def beat_ages(self) -> dict[str, float]:
        """Seconds since every worker's last heartbeat."""
        now_s = self.server_time_s()
        beats = self.client.zrange(self.workers_key, 0, -1, withscores=True)
        return {worker: max(0.0, now_s - float(score)) for worker, score in beats}

    def prune_workers(self, silent_s: float) -> list[str]:
        """Drop workers silent for more than silent_s seconds; return them."""
        before_s = self.server_time_s() - silent_s
        stale: list[str] = self.client.zrangebyscore(self.workers_key, "-inf", before_s)
        for worker in stale:
            self.forget_worker(worker)
        return stale

    # -- scheduler -----------------------------------------------------------------

    def take_due(self, now_s: float, limit: int = 1000) -> list[str]:
        """Take ids whose run_at has come off the delayed queue."""
        ids: list[str] = self._take_due(
            keys=[self.delayed_key],
            args=[math.floor(now_s * 1_000_000) / 1000, limit],
        )
        return ids

    def next_delayed_at(self) -> float | None:
        """The earliest run_at on the delayed queue, in epoch seconds."""
        head = self.client.zrange(self.delayed_key, 0, 0, withscores=True)
        return head[0][1] / 1000 if head else None

    def nudge_scheduler(self) -> None:
        """Wake the scheduler so it rereads what is due next."""
        self.client.rpush(self.wakeup_key, "1")
        self.client.ltrim(self.wakeup_key, 0, 0)

    def wait_for_nudge(self, timeout_s: float) -> bool:
        return self.client.blpop([self.wakeup_key], timeout=timeout_s) is not None

    def find_missing(self, task_ids: list[str]) -> list[str]:
        """Return the ids Redis holds in no queue and no in-flight list."""
        if not task_ids:
            return []
        keys = [self.delayed_key]
        keys += [
            self.ready_key(int(p)) for p in self.client.zrange(self.levels_key, 0, -1)
        ]
        keys += [self.inflight_key(w) for w in self.inflight_workers()]
        missing: list[str] = self._find_missing(keys=keys, args=task_ids)
        return missing

    def has_epoch(self) -> bool:
        return bool(self.client.exists(self.epoch_key))

    def start_rebuild(self, ttl_s: int) -> bool:
        """Claim the rebuild for ttl_s seconds; False when another scheduler holds it."""
        return bool(self.client.set(self.rebuilding_key, "1", nx=True, ex=ttl_s))

    def finish_rebuild(self) -> None:
        """Mark Redis as holding what the store says, and release the rebuild."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.epoch_key, str(time.time()))
        pipe.delete(self.rebuilding_key)
        pipe.execute()

    def depths(self) -> dict[str, int]:
        """Lengths of the ready queues (all priorities) and the delayed queue."""
        levels = self.client.zrange(self.levels_key, 0, -1)
        pipe = self.client.pipeline(transaction=False)
        for level in levels:
            pipe.llen(self.ready_key(int(level)))
        pipe.zcard(self.delayed_key)
        counts = pipe.execute()
        return {"ready": sum(counts[:-1]), "delayed": counts[-1]}

    def ping(self) -> None:
        self.client.ping()
