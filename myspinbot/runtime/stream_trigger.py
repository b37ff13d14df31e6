r"""The `redis-stream` trigger: a consumer group with at-least-once delivery.

Life of a message:
  read (XREADGROUP) -> handler -> XACK                        on success
                             \-> delayed set -> back on stream  on failure, with backoff
                              \-> dead-letter stream          after maxDeliveries
A replica renews the messages it holds (heartbeat) so that a long handler keeps
them; a message whose replica died goes idle and another replica takes it over
(XAUTOCLAIM). A restarted replica keeps its consumer name and takes back its own
pending messages first. Each delivery carries a lease (myspinbot.runtime.lease):
acks, retries and the handler's own writes are refused once another replica has
taken the message over.

The trigger knows nothing of what a message means. A handler may carry an
`on_failure(message, attempt, error, retry_in)` hook that returns stream entries
to append atomically with a retry (`retry_in` seconds) or a dead letter (None).
"""

from __future__ import annotations

import datetime
import json
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nuclio_sdk
import redis

from myspinbot import keys, metrics
from myspinbot.lua import lua
from myspinbot.runtime.config import (
    ATTEMPT_HEADER,
    DELIVERIES_HEADER,
    LEASE_HEADER,
    RedisStreamAttributes,
    Trigger,
)
from myspinbot.runtime.lease import Lease, LeaseLost, Writes, settle

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

    @property
    def origin(self) -> str:
        """The id of the entry this message first came as: kept across retries."""
        return self.fields.get("origin") or self.id


# on_failure(message, attempt, error, retry_in) -> entries to append with the retry/dead letter
FailureHook = Callable[[Message, int, str, float | None], Sequence[tuple[str, Mapping[str, Any]]]]
# Entries of a stream that every group has acknowledged are trimmed this often.
TRIM_EVERY_S = 1.0


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
        on_failure: FailureHook | None = None,
    ) -> None:
        self.function, self.name, self.consumer = function, name, consumer
        self.attrs: RedisStreamAttributes = trigger.stream_attributes()
        self.stream = keys.stream(self.attrs.stream)
        self.group = self.attrs.consumer_group
        self.reclaim_idle_s = self.attrs.reclaim_idle_s or default_reclaim_idle_s
        self._on_failure = on_failure
        self._handler, self._contexts, self._redis, self._log = handler, contexts, client, logger
        self._queue: queue.Queue[Message] = queue.Queue()
        self._held: dict[str, Message] = {}
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        script = {
            name: client.register_script(lua("myspinbot.runtime", "stream.lua", name))
            for name in ("heartbeat", "move_due", "ack", "trim_acked")
        }
        self._heartbeat, self._move_due = script["heartbeat"], script["move_due"]
        self._ack, self._trim = script["ack"], script["trim_acked"]
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
        self._drop_deleted([i for i in ids if i not in got])
        msgs = [Message(mid, fields, self._deliveries(mid)) for mid, fields in got.items()]
        self._take(msgs)
        return msgs

    def _drop_deleted(self, ids: list[str]) -> None:
        """Pending entries whose body is gone. Only acknowledged entries are trimmed, so
        this means someone deleted them by hand (XDEL): say so loudly, then forget them."""
        if ids:
            self._log.error_with("Pending messages were deleted from the stream", ids=ids)
            self._redis.xack(self.stream, self.group, *ids)

    def _deliveries(self, message_id: str) -> int:
        info = self._redis.xpending_range(self.stream, self.group, message_id, message_id, 1)
        return int(info[0]["times_delivered"]) if info else 1

    def lease(self, m: Message) -> Lease:
        return Lease(self.stream, self.group, m.id, self.consumer, m.deliveries)

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
                self._guarded(
                    self._dead_letter,
                    m,
                    f"delivered {m.attempt} times without finishing (the process died each time)",
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
        except LeaseLost as exc:
            # Taken over while this replica looked dead: the new owner runs it, nothing
            # of ours may be written. Stop like a cancel.
            metrics.FUNCTION_INVOCATIONS.labels(*labels, "lease_lost").inc()
            metrics.STREAM_LEASES_LOST.labels(**self._labels).inc(len(runnable))
            self._log.warn_with("Lost the lease; another replica runs it", error=str(exc))
            self._forget(runnable)
        except Exception as exc:
            metrics.FUNCTION_INVOCATIONS.labels(*labels, "error").inc()
            self._log.warn_with(
                "Handler failed", function=self.function, error=f"{type(exc).__name__}: {exc}"
            )
            for m in runnable:
                self._guarded(self._fail, m, exc)
        else:
            metrics.FUNCTION_INVOCATIONS.labels(*labels, "success").inc()
            self._guarded(self._ack_all, runnable)
        finally:
            metrics.FUNCTION_INFLIGHT.labels(*labels).dec()
            metrics.FUNCTION_DURATION.labels(*labels).observe(time.perf_counter() - started)

    def _guarded(self, settle_fn: Callable[..., None], *args: Any) -> None:
        """Settling needs Redis. If it is away, the message stays pending and is
        reclaimed once Redis is back (by this replica or another): nothing is lost,
        and the worker thread lives on."""
        try:
            settle_fn(*args)
        except redis.RedisError as exc:
            self._log.warn_with(
                "Could not settle a message; it will be redelivered", error=str(exc)
            )
            first = args[0]
            self._forget(first if isinstance(first, list) else [first])

    def _ack_all(self, msgs: list[Message]) -> None:
        args: list[Any] = [self.group, self.consumer]
        for m in msgs:
            args += [m.id, m.deliveries]
        lost = int(self._ack(keys=[self.stream], args=args))
        if lost:
            # The handler finished, but another replica holds these now: its run counts.
            metrics.STREAM_LEASES_LOST.labels(**self._labels).inc(lost)
        self._forget(msgs)

    def _event(self, m: Message) -> nuclio_sdk.Event:
        try:
            body: Any = json.loads(m.body)
        except ValueError:
            body = m.body.encode()
        ms = int(m.origin.split("-", 1)[0])
        return nuclio_sdk.Event(
            body=body,
            content_type="application/json",
            trigger=nuclio_sdk.TriggerInfo("redis-stream", self.name),
            headers={
                ATTEMPT_HEADER: str(m.attempt),
                DELIVERIES_HEADER: str(m.deliveries),
                LEASE_HEADER: self.lease(m).header(),
            },
            _id=m.origin,
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
    def _hook(self, m: Message, error: str, retry_in: float | None) -> list[tuple[str, Any]]:
        if self._on_failure is None:
            return []
        return list(self._on_failure(m, m.attempt, error, retry_in))

    def _fail(self, m: Message, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if m.attempt >= self.attrs.max_deliveries:
            self._dead_letter(m, error)
            return
        delay = backoff_delay(m.attempt, self.attrs.backoff_base_s, self.attrs.backoff_max_s)
        member = json.dumps(
            {"body": m.body, "attempt": m.attempt + 1, "from": m.id, "origin": m.origin}
        )
        writes = Writes(
            append=self._hook(m, error, delay),
            delay=(keys.delayed(self.stream), time.time() + delay, member),
            ack=True,
        )
        if settle(self._redis, self.lease(m), writes).held:
            metrics.STREAM_RETRIES.labels(**self._labels).inc()
        self._forget([m])

    def _dead_letter(self, m: Message, error: str) -> None:
        entry = {
            "body": m.body,
            "attempt": str(m.attempt),
            "error": error,
            "source_id": m.id,
            "origin": m.origin,
            "function": self.function,
            "failed_at": str(time.time()),
        }
        # Never trimmed: a dead letter stays until someone retries or deletes it.
        writes = Writes(
            append=[(keys.dead_letter(self.stream), entry), *self._hook(m, error, None)], ack=True
        )
        if settle(self._redis, self.lease(m), writes).held:
            metrics.STREAM_DEAD_LETTERS.labels(**self._labels).inc()
            self._log.error_with("Message dead-lettered", id=m.id, error=error)
        self._forget([m])

    def _release(self, m: Message) -> None:
        """Give a message back (shutdown): a fresh copy on the stream, the old one acked."""
        copy = {"body": m.body, "attempt": str(m.attempt), "origin": m.origin}
        try:
            settle(self._redis, self.lease(m), Writes(append=[(self.stream, copy)], ack=True))
        except redis.RedisError as exc:  # stays pending; reclaimed after the idle time
            self._log.warn_with("Could not hand a message back", error=str(exc))
        self._forget([m])

    # --- housekeeping --------------------------------------------------------------------
    def _maintain_loop(self) -> None:
        heartbeat_every = self.reclaim_idle_s / 3
        reclaim_every = self.reclaim_idle_s / 2
        next_heartbeat = next_reclaim = next_trim = time.monotonic()
        while not self._stopping.wait(0.1):
            now = time.monotonic()
            try:
                self._move_due(
                    keys=[keys.delayed(self.stream), self.stream], args=[time.time(), 100]
                )
                if now >= next_heartbeat:
                    next_heartbeat = now + heartbeat_every
                    self._renew()
                if now >= next_reclaim:
                    next_reclaim = now + reclaim_every
                    self._reclaim()
                if now >= next_trim:
                    next_trim = now + TRIM_EVERY_S
                    self._trim(keys=[self.stream])
            except redis.RedisError as exc:
                self._log.warn_with("Stream housekeeping failed", error=str(exc))

    def _renew(self) -> None:
        with self._lock:
            ids = list(self._held)
        if not ids:
            return
        kept = set(self._heartbeat(keys=[self.stream], args=[self.group, self.consumer, *ids]))
        for lost in set(ids) - kept:
            # Another replica took it while this one looked dead (it runs there now, and
            # this run's writes are refused), or its handler settled it a moment ago.
            self._log.info_with("A held message is no longer this replica's", id=lost)

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
        self._drop_deleted(deleted + [mid for mid, fields in claimed if not fields])
        msgs = [Message(mid, fields, self._deliveries(mid)) for mid, fields in claimed if fields]
        if msgs:
            self._log.info_with("Reclaimed messages from a silent replica", count=len(msgs))
            metrics.STREAM_RECLAIMED.labels(**self._labels).inc(len(msgs))
            self._take(msgs)
