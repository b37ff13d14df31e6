"""The WebSocket hub: one reader of the fanout stream, many clients.

Each client has a bounded queue and its own sender task, so a slow client only
fills its own queue; when it is full the client is disconnected (it resumes
with `lastEventId` on reconnect) and nobody else waits.

Subscribing while events keep arriving: the subscription is registered first
and live events for it are held back while the missed events are read from the
per-job stream; then the held ones newer than the last replayed id are sent.
So every event reaches the client once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from myspinbot import keys, metrics
from myspinbot.jobs.livestate import job_from_hash
from myspinbot.jobs.models import Job, JobState

log = logging.getLogger("gateway.hub")

MAX_SUBSCRIPTIONS_PER_CLIENT = 1000
EVENT_ID = re.compile(r"\d+-\d+")
# Whether a connection's user may follow a job (its ownership rule, gateway/ownership.py).
MaySee = Callable[[Job], bool]


def id_tuple(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def ws_type(kind: str, state: str) -> str:
    if kind == "progress":
        return "progress"
    if state == JobState.failed:
        return "error"
    if state in (JobState.completed, JobState.cancelled):
        return "done"
    return "state"


def to_message(ev: dict[str, Any]) -> dict[str, Any]:
    msg = {
        "type": ws_type(ev.get("kind", "state"), ev.get("state", "")),
        "jobId": ev["jobId"],
        "eventId": ev["eventId"],
        "progress": ev.get("progress"),
        "state": ev.get("state"),
        "step": ev.get("step"),
        "message": ev.get("message"),
        "etaSeconds": ev.get("etaSeconds"),
        "ts": ev.get("ts"),
    }
    for extra in ("error", "result", "metrics"):
        if ev.get(extra) is not None:
            msg[extra] = ev[extra]
    return msg


def snapshot_message(job: Job, event_id: str | None) -> dict[str, Any]:
    return {
        "type": ws_type("state", job.state.value),
        "snapshot": True,
        "jobId": job.id,
        "eventId": event_id,
        "progress": job.progress,
        "state": job.state.value,
        "step": job.step,
        "message": job.message,
        "etaSeconds": job.eta_seconds,
        "error": job.error,
        "result": job.result,
        "ts": job.updated_at,
    }


@dataclass(frozen=True)
class Outgoing:
    """A message serialised once, however many clients it goes to."""

    text: str
    event_id: tuple[int, int] | None = None
    ts: float | None = None  # when the handler reported it (for the latency metric)

    @classmethod
    def of(cls, msg: dict[str, Any], live: bool = False) -> Outgoing:
        eid = id_tuple(msg["eventId"]) if msg.get("eventId") else None
        return cls(json.dumps(msg), eid, float(msg["ts"]) if live and msg.get("ts") else None)


class Client:
    def __init__(self, ws: WebSocket, queue_size: int, may_see: MaySee) -> None:
        self.ws = ws
        self.may_see = may_see
        self.queue: asyncio.Queue[Outgoing | None] = asyncio.Queue(queue_size)
        self.last_sent: dict[str, tuple[int, int]] = {}
        self.held: dict[str, list[Outgoing]] = {}  # job -> live events during catch-up
        self.dropped = False

    def offer(self, msg: dict[str, Any] | Outgoing) -> bool:
        out = msg if isinstance(msg, Outgoing) else Outgoing.of(msg)
        try:
            self.queue.put_nowait(out)
            return True
        except asyncio.QueueFull:
            return False

    async def sender(self) -> None:
        while True:
            out = await self.queue.get()
            if out is None:
                return
            await self.ws.send_text(out.text)
            metrics.WS_EVENTS_SENT.inc()
            if out.ts is not None:
                metrics.EVENT_LATENCY.observe(max(time.time() - out.ts, 0.0))


class Waiter:
    """Resolved when ws-relay has applied a job's first event (see `Hub.expect`)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
            return True
        except TimeoutError:
            return False


class Hub:
    def __init__(
        self,
        client: aioredis.Redis,
        queue_size: int,
        sign: Callable[[dict[str, Any]], dict[str, Any]] = lambda msg: msg,
    ) -> None:
        self._redis = client
        self._queue_size = queue_size
        # Adds fresh download links to a message carrying a result (events hold keys only).
        self._sign = sign
        self._subs: dict[str, set[Client]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._waiters: dict[str, Waiter] = {}

    async def start(self) -> None:
        self._task = asyncio.create_task(self._read_fanout(), name="hub-fanout")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def expect(self, job_id: str) -> Iterator[Waiter]:
        """Wait for a job's events to show up on the fanout, without a Redis call of its own."""
        waiter = self._waiters[job_id] = Waiter()
        try:
            yield waiter
        finally:
            self._waiters.pop(job_id, None)

    # --- fanout ---------------------------------------------------------------------------
    async def _read_fanout(self) -> None:
        last = await self._fanout_tail()
        while True:
            try:
                resp: Any = await self._redis.xread({keys.FANOUT: last}, count=500, block=1000)
            except (aioredis.RedisError, OSError) as exc:
                log.warning("fanout read failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            for _stream, entries in resp or []:
                for entry_id, fields in entries:
                    last = entry_id
                    self._dispatch(fields.get("job", ""), fields.get("data", "{}"))

    async def _fanout_tail(self) -> str:
        while True:
            try:
                tail = await self._redis.xrevrange(keys.FANOUT, count=1)
                return str(tail[0][0]) if tail else "0-0"
            except (aioredis.RedisError, OSError) as exc:
                log.warning("Redis not reachable for the hub (%s); retrying", exc)
                await asyncio.sleep(0.5)

    def _dispatch(self, job_id: str, data: str) -> None:
        waiter = self._waiters.get(job_id)
        if waiter is not None:
            waiter.set()
        clients = self._subs.get(job_id)
        if not clients:
            return
        out = Outgoing.of(self._sign(to_message(json.loads(data))), live=True)
        for c in list(clients):
            if job_id in c.held:
                c.held[job_id].append(out)
            else:
                self._deliver(c, job_id, out)

    def _deliver(self, c: Client, job_id: str, out: Outgoing) -> None:
        assert out.event_id is not None
        if out.event_id <= c.last_sent.get(job_id, (0, 0)):
            return
        c.last_sent[job_id] = out.event_id
        if not c.offer(out) and not c.dropped:
            # Too slow to keep up: close it rather than let its backlog grow.
            c.dropped = True
            metrics.WS_CLIENTS_DROPPED.inc()
            task = asyncio.create_task(self._close_slow(c))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close_slow(self, c: Client) -> None:
        with contextlib.suppress(Exception):
            await c.ws.close(code=1013, reason="too slow; reconnect with lastEventId")

    # --- subscriptions --------------------------------------------------------------------
    async def subscribe(self, c: Client, job_id: str, last_event_id: str | None) -> None:
        if len(c.last_sent) >= MAX_SUBSCRIPTIONS_PER_CLIENT and job_id not in c.last_sent:
            c.offer(
                {
                    "type": "error",
                    "jobId": job_id,
                    "code": "too_many_subscriptions",
                    "message": f"at most {MAX_SUBSCRIPTIONS_PER_CLIENT} jobs per connection",
                }
            )
            return
        c.held[job_id] = []
        self._subs.setdefault(job_id, set()).add(c)
        subscribed = False
        try:
            subscribed = await self._catch_up(c, job_id, last_event_id)
        finally:
            held = c.held.pop(job_id, [])
            # A refused subscription gets none of the events that came in meanwhile.
            for out in held if subscribed else []:
                self._deliver(c, job_id, out)

    async def _catch_up(self, c: Client, job_id: str, last_event_id: str | None) -> bool:
        """Send what the client missed; False when the job is unknown to it (missing, or
        someone else's: both are refused alike, so the answer reveals nothing)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.hgetall(keys.job(job_id))
        pipe.xrevrange(keys.job_events(job_id), count=1)
        pipe.xrange(keys.job_events(job_id), min="-", max="+", count=1)
        h, newest, oldest = await pipe.execute()
        job = job_from_hash(h)
        if job is None or not c.may_see(job):
            self.unsubscribe(c, job_id)
            c.offer(
                {
                    "type": "error",
                    "jobId": job_id,
                    "code": "unknown_job",
                    "message": f"No live job with id {job_id!r}",
                }
            )
            return False
        newest_id = str(newest[0][0]) if newest else None
        # Resume only if the client's last event is still retained, so nothing between
        # it and the oldest entry was trimmed away.
        resumable = bool(
            last_event_id and oldest and id_tuple(last_event_id) >= id_tuple(str(oldest[0][0]))
        )
        if not resumable:
            # Fresh subscribe (or the client is too far behind): the current state first.
            c.offer(self._sign(snapshot_message(job, newest_id)))
            if newest_id:
                c.last_sent[job_id] = id_tuple(newest_id)
            return True
        assert last_event_id is not None
        c.last_sent[job_id] = id_tuple(last_event_id)
        missed: Any = await self._redis.xrange(
            keys.job_events(job_id), min=f"({last_event_id}", max="+"
        )
        for _eid, fields in missed:
            msg = self._sign(to_message(json.loads(fields["data"])))
            self._deliver(c, job_id, Outgoing.of(msg))
        return True

    def unsubscribe(self, c: Client, job_id: str) -> None:
        subs = self._subs.get(job_id)
        if subs is not None:
            subs.discard(c)
            if not subs:
                del self._subs[job_id]
        c.last_sent.pop(job_id, None)

    def disconnect(self, c: Client) -> None:
        for job_id in list(c.last_sent) + list(c.held):
            self.unsubscribe(c, job_id)

    # --- one connection ---------------------------------------------------------------------
    async def serve(
        self,
        ws: WebSocket,
        initial_job: str | None,
        last_event_id: str | None,
        may_see: MaySee,
    ) -> None:
        await ws.accept()
        c = Client(ws, self._queue_size, may_see)
        metrics.WS_CLIENTS.inc()
        sender = asyncio.create_task(c.sender())
        try:
            if initial_job:
                await self.subscribe(c, initial_job, last_event_id)
            while True:
                try:
                    raw = await ws.receive_text()
                    msg = json.loads(raw)
                    if not isinstance(msg, dict):
                        raise ValueError
                except (ValueError, TypeError):
                    c.offer(
                        {
                            "type": "error",
                            "code": "bad_message",
                            "message": 'send JSON like {"type":"subscribe","jobId":"..."}',
                        }
                    )
                    continue
                await self._on_message(c, msg)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.disconnect(c)
            metrics.WS_CLIENTS.dec()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            if ws.application_state != WebSocketState.DISCONNECTED:
                with contextlib.suppress(Exception):
                    await ws.close()

    async def _on_message(self, c: Client, msg: dict[str, Any]) -> None:
        kind, job_id = msg.get("type"), msg.get("jobId")
        if kind == "ping":
            c.offer({"type": "pong"})
        elif kind not in ("subscribe", "unsubscribe") or not isinstance(job_id, str) or not job_id:
            c.offer(
                {
                    "type": "error",
                    "code": "bad_message",
                    "message": "expected {type: subscribe|unsubscribe, jobId: string}",
                }
            )
        elif kind == "subscribe":
            last = msg.get("lastEventId")
            valid = isinstance(last, str) and EVENT_ID.fullmatch(last)
            await self.subscribe(c, job_id, last if valid else None)
        else:
            self.unsubscribe(c, job_id)
