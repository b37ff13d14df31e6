r"""The `redis-stream` trigger: a consumer group with at-least-once delivery.

Life of a message:
  read (XREADGROUP) -> handler -> XACK                        on success
                             \-> delayed set -> back on stream  on failure, with backoff
                              \-> dead-letter stream          after maxDeliveries
A replica renews the messages it holds (heartbeat) so that a long handler keeps
them; a message whose replica died goes idle and another replica takes it over
(XAUTOCLAIM). A restarted replica keeps its consumer name and takes back its own
pending messages first.
"""

from __future__ import annotations

import datetime
import json
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nuclio_sdk
import redis

from myspinbot import keys, metrics
from myspinbot.jobs import events
from myspinbot.jobs.handler import ATTEMPT_HEADER
from myspinbot.jobs.models import JobState
from myspinbot.runtime.config import RedisStreamAttributes, Trigger
from myspinbot.runtime.scripts import lua

JOB_STREAM_MAXLEN = 100_000
JITTER = 0.2


def backoff_delay(attempt: int, base_s: float, max_s: float, rand: float | None = None) -> float:
    """Seconds before retry `attempt + 1`: exponential, capped, with ±20% jitter
    so replicas that failed together do not retry in lockstep."""
    r = random.random() if rand is None else rand
    return float(min(base_s * 2 ** (attempt - 1), max_s) * (1 - JITTER + 2 * JITTER * r))


@dataclass
class Message:
    id: str
    fields: dict[str, str]
    deliveries: int = 1

    @property
    def attempt(self) -> int:
        """Retries come back as new entries with a higher `attempt`; crashes add deliveries."""
        return int(self.fields.get("attempt", 1)) + self.deliveries - 1

    @property
    def body(self) -> str:
        return self.fields.get("body", "")


class StreamTrigger:
    def __init__(
        self,
        *,
        function: str,
        name: str,
        trigger: Trigger,
        handler: Callable[[Any, Any], Any],
        contexts: list[Any],
        client: redis.Redis,
        consumer: str,
        default_reclaim_idle_s: float,
        logger: Any,
    ) -> None:
        self.function, self.name, self.consumer = function, name, consumer
        self.attrs: RedisStreamAttributes = trigger.stream_attributes()
        self.stream = keys.stream(self.attrs.stream)
        self.group = self.attrs.consumer_group
        self.reclaim_idle_s = self.attrs.reclaim_idle_s or default_reclaim_idle_s
        self.is_job_stream = self.attrs.stream.startswith("jobs.")
        self._handler, self._contexts, self._redis, self._log = handler, contexts, client, logger
        self._queue: queue.Queue[Message] = queue.Queue()
        self._held: dict[str, Message] = {}
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._heartbeat = client.register_script(
            lua("myspinbot.runtime", "stream.lua", "heartbeat")
        )
        self._move_due = client.register_script(lua("myspinbot.runtime", "stream.lua", "move_due"))
        self._labels = {"function": function, "stream": self.stream}

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self._ensure_group()
        self._recover_own_pending()
        for i in range(len(self._contexts)):
            self._spawn(self._work, f"{self.name}-worker-{i}", i)
        self._spawn(self._read_loop, f"{self.name}-reader")
        self._spawn(self._maintain_loop, f"{self.name}-maintenance")

    def stop(self, drain_timeout_s: float | None = None) -> None:
        """Stop reading; wait for handlers in flight; hand back what did not finish."""
        self._stopping.set()
        deadline = time.monotonic() + (
            self.attrs.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        )
        with self._lock:
            # Messages read but not started go back now, so another replica can run them.
            while True:
                try:
                    self._release(self._queue.get_nowait())
                except queue.Empty:
                    break
            while self._held and time.monotonic() < deadline:
                self._lock.wait(timeout=0.1)
            leftovers = list(self._held.values())
        for msg in leftovers:
            self._release(msg)
        # Reader and housekeeping wake at least every 0.5 s; a worker still inside a
        # handler that outlived the drain is left behind (its message was handed back).
        for t in self._threads:
            t.join(timeout=1.0)

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _ensure_group(self) -> None:
        try:
            self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # --- reading -----------------------------------------------------------------------
    def _free_slots(self) -> int:
        return len(self._contexts) * self.attrs.batch_size - len(self._held)

    def _take(self, messages: list[Message]) -> None:
        with self._lock:
            for m in messages:
                self._held[m.id] = m
        for m in messages:
            self._queue.put(m)

    def _recover_own_pending(self) -> None:
        """After a restart, claim back what this consumer held when it died.

        XCLAIM (unlike re-reading the PEL) counts a delivery, so a message that
        kills the process every time still reaches maxDeliveries.
        """
        pending: Any = self._redis.xpending_range(
            self.stream, self.group, "-", "+", 1000, consumername=self.consumer
        )
        ids = [str(p["message_id"]) for p in pending]
        if ids:
            self._claim(ids, min_idle_ms=0)

    def _claim(self, ids: list[str], min_idle_ms: int) -> list[Message]:
        claimed: Any = self._redis.xclaim(
            self.stream, self.group, self.consumer, min_idle_ms, list[Any](ids)
        )
        got = {mid: fields for mid, fields in claimed if fields is not None}
        gone = [i for i in ids if i not in got]
        if gone:  # trimmed away while pending: nothing left to run
            self._redis.xack(self.stream, self.group, *gone)
        msgs = [Message(mid, fields, self._deliveries(mid)) for mid, fields in got.items()]
        self._take(msgs)
        return msgs

    def _deliveries(self, message_id: str) -> int:
        info = self._redis.xpending_range(self.stream, self.group, message_id, message_id, 1)
        return int(info[0]["times_delivered"]) if info else 1

    def _read_loop(self) -> None:
        while not self._stopping.is_set():
            free = self._free_slots()
            if free <= 0:
                with self._lock:
                    self._lock.wait(timeout=0.5)
                continue
            try:
                resp: Any = self._redis.xreadgroup(
                    self.group, self.consumer, {self.stream: ">"}, count=free, block=500
                )
            except redis.RedisError as exc:
                self._log.warn_with("Stream read failed; retrying", error=str(exc))
                self._stopping.wait(1.0)
                continue
            for _stream, entries in resp or []:
                self._take([Message(mid, fields) for mid, fields in entries if fields])

    # --- running -----------------------------------------------------------------------
    def _work(self, index: int) -> None:
        context = self._contexts[index]
        while not self._stopping.is_set():
            try:
                first = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.attrs.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._run(context, batch)

    def _run(self, context: Any, batch: list[Message]) -> None:
        runnable = []
        for m in batch:
            if m.attempt > self.attrs.max_deliveries:
                self._dead_letter(
                    m, f"delivered {m.attempt} times without finishing (the process died each time)"
                )
            else:
                runnable.append(m)
        if not runnable:
            return
        evts = [self._event(m) for m in runnable]
        labels = (self.function, self.name)
        metrics.FUNCTION_INFLIGHT.labels(*labels).inc()
        started = time.perf_counter()
        try:
            self._handler(context, evts if self.attrs.batch_size > 1 else evts[0])
        except Exception as exc:
            metrics.FUNCTION_INVOCATIONS.labels(*labels, "error").inc()
            self._log.warn_with(
                "Handler failed", function=self.function, error=f"{type(exc).__name__}: {exc}"
            )
            for m in runnable:
                self._fail(m, exc)
        else:
            metrics.FUNCTION_INVOCATIONS.labels(*labels, "success").inc()
            self._redis.xack(self.stream, self.group, *[m.id for m in runnable])
            self._forget(runnable)
        finally:
            metrics.FUNCTION_INFLIGHT.labels(*labels).dec()
            metrics.FUNCTION_DURATION.labels(*labels).observe(time.perf_counter() - started)

    def _event(self, m: Message) -> nuclio_sdk.Event:
        try:
            body: Any = json.loads(m.body)
        except ValueError:
            body = m.body.encode()
        ms = int(m.id.split("-", 1)[0])
        return nuclio_sdk.Event(
            body=body,
            content_type="application/json",
            trigger=nuclio_sdk.TriggerInfo("redis-stream", self.name),
            headers={ATTEMPT_HEADER: str(m.attempt), "X-Myspinbot-Deliveries": str(m.deliveries)},
            _id=m.id,
            path=self.attrs.stream,
            topic=self.stream,
            size=len(m.body),
            timestamp=datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC),
            method="POST",
        )

    def _forget(self, msgs: list[Message]) -> None:
        with self._lock:
            for m in msgs:
                self._held.pop(m.id, None)
            self._lock.notify_all()

    # --- failure paths -----------------------------------------------------------------
    def _job_id(self, m: Message) -> str | None:
        if not self.is_job_stream:
            return None
        try:
            job_id = json.loads(m.body).get("id")
        except (ValueError, AttributeError):
            return None
        return job_id if isinstance(job_id, str) else None

    def _fail(self, m: Message, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if m.attempt >= self.attrs.max_deliveries:
            self._dead_letter(m, error)
            return
        delay = backoff_delay(m.attempt, self.attrs.backoff_base_s, self.attrs.backoff_max_s)
        member = json.dumps({"body": m.body, "attempt": m.attempt + 1, "from": m.id})
        pipe = self._redis.pipeline(transaction=True)
        pipe.zadd(keys.delayed(self.stream), {member: time.time() + delay})
        pipe.xack(self.stream, self.group, m.id)
        job_id = self._job_id(m)
        if job_id:
            message = (
                f"Attempt {m.attempt} of {self.attrs.max_deliveries} failed ({error}); "
                f"retrying in {delay:.1f} s"
            )
            ev = events.state(job_id, JobState.queued, attempt=m.attempt + 1, message=message)
            stream, fields = events.xadd_args(ev)
            pipe.xadd(stream, fields, maxlen=events.EVENTS_MAXLEN, approximate=True)
        pipe.execute()
        metrics.STREAM_RETRIES.labels(**self._labels).inc()
        self._forget([m])

    def _dead_letter(self, m: Message, error: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.xadd(
            keys.dead_letter(self.stream),
            {
                "body": m.body,
                "attempt": str(m.attempt),
                "error": error,
                "source_id": m.id,
                "function": self.function,
                "failed_at": str(time.time()),
            },
            maxlen=JOB_STREAM_MAXLEN,
            approximate=True,
        )
        pipe.xack(self.stream, self.group, m.id)
        job_id = self._job_id(m)
        if job_id:
            ev = events.state(
                job_id,
                JobState.failed,
                attempt=m.attempt,
                error=error,
                message=f"Failed after {m.attempt} attempt(s): {error}",
            )
            stream, fields = events.xadd_args(ev)
            pipe.xadd(stream, fields, maxlen=events.EVENTS_MAXLEN, approximate=True)
        pipe.execute()
        metrics.STREAM_DEAD_LETTERS.labels(**self._labels).inc()
        self._log.error_with("Message dead-lettered", id=m.id, error=error)
        self._forget([m])

    def _release(self, m: Message) -> None:
        """Give a message back (shutdown): a fresh copy on the stream, the old one acked."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.xadd(
            self.stream,
            {"body": m.body, "attempt": str(m.attempt)},
            maxlen=JOB_STREAM_MAXLEN,
            approximate=True,
        )
        pipe.xack(self.stream, self.group, m.id)
        pipe.execute()
        self._forget([m])

    # --- housekeeping --------------------------------------------------------------------
    def _maintain_loop(self) -> None:
        heartbeat_every = self.reclaim_idle_s / 3
        reclaim_every = self.reclaim_idle_s / 2
        next_heartbeat = next_reclaim = time.monotonic()
        while not self._stopping.wait(0.1):
            now = time.monotonic()
            try:
                self._move_due(
                    keys=[keys.delayed(self.stream), self.stream],
                    args=[time.time(), 100, JOB_STREAM_MAXLEN],
                )
                if now >= next_heartbeat:
                    next_heartbeat = now + heartbeat_every
                    self._renew()
                if now >= next_reclaim:
                    next_reclaim = now + reclaim_every
                    self._reclaim()
            except redis.RedisError as exc:
                self._log.warn_with("Stream housekeeping failed", error=str(exc))

    def _renew(self) -> None:
        with self._lock:
            ids = list(self._held)
        if not ids:
            return
        kept = set(self._heartbeat(keys=[self.stream], args=[self.group, self.consumer, *ids]))
        for lost in set(ids) - kept:
            # Another replica took it while this one looked dead; it runs there now.
            self._log.warn_with("Lost ownership of a message", id=lost)

    def _reclaim(self) -> None:
        free = self._free_slots()
        if free <= 0:
            return
        res: Any = self._redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            int(self.reclaim_idle_s * 1000),
            start_id="0-0",
            count=free,
        )
        # Redis 7 lists trimmed entries separately; 6.2 returns them with no fields.
        claimed = res[1]
        deleted = list(res[2]) if len(res) > 2 else []
        deleted += [mid for mid, fields in claimed if not fields]
        if deleted:
            self._redis.xack(self.stream, self.group, *deleted)
        msgs = [Message(mid, fields, self._deliveries(mid)) for mid, fields in claimed if fields]
        if msgs:
            self._log.info_with("Reclaimed messages from a silent replica", count=len(msgs))
            metrics.STREAM_RECLAIMED.labels(**self._labels).inc(len(msgs))
            self._take(msgs)
