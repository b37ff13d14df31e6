"""The redis-stream trigger against a real Redis: ack, retry, dead-letter, reclaim."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import nuclio_sdk
import pytest
import redis

from myspinbot import keys
from myspinbot.jobs.retries import on_failure
from myspinbot.runtime.config import Trigger
from myspinbot.runtime.process import make_logger
from myspinbot.runtime.stream_trigger import StreamTrigger, backoff_delay

LOGGER = make_logger("test", "WARNING")


def wait_for(cond: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Harness:
    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self.triggers: list[StreamTrigger] = []

    def trigger(
        self,
        handler: Callable[[Any, Any], Any],
        consumer: str = "c-0",
        workers: int = 1,
        **attrs: Any,
    ) -> StreamTrigger:
        cfg = Trigger.model_validate(
            {
                "kind": "redis-stream",
                "numWorkers": workers,
                "attributes": {
                    "stream": "jobs.test",
                    "consumerGroup": "g",
                    "maxDeliveries": 3,
                    "backoffBaseSeconds": 0.1,
                    "backoffMaxSeconds": 0.5,
                    **attrs,
                },
            }
        )
        contexts = [nuclio_sdk.Context(LOGGER) for _ in range(workers)]
        t = StreamTrigger(
            function="test",
            name="jobs",
            trigger=cfg,
            handler=handler,
            contexts=contexts,
            client=self.r,
            consumer=consumer,
            default_reclaim_idle_s=1.0,
            logger=LOGGER,
            on_failure=on_failure,  # what a job function's handler carries
        )
        t.start()
        self.triggers.append(t)
        return t

    def send(self, job_id: str = "j1") -> str:
        body = json.dumps({"id": job_id, "type": "generate", "params": {}})
        return str(self.r.xadd(keys.stream("jobs.test"), {"body": body, "attempt": "1"}))

    def pending(self) -> int:
        return int(self.r.xpending(keys.stream("jobs.test"), "g")["pending"])


@pytest.fixture
def h(r: redis.Redis) -> Iterator[Harness]:
    harness = Harness(r)
    yield harness
    for t in harness.triggers:
        t.stop(drain_timeout_s=0)


def test_success_is_acknowledged(h: Harness) -> None:
    seen: list[nuclio_sdk.Event] = []
    h.trigger(lambda ctx, ev: seen.append(ev))
    h.send()
    wait_for(lambda: seen, what="invocation")
    wait_for(lambda: h.pending() == 0, what="ack")
    ev = seen[0]
    assert ev.body["id"] == "j1" and ev.trigger.kind == "redis-stream"
    assert ev.headers["X-Myspinbot-Attempt"] == "1"


def test_failures_retry_with_backoff_then_dead_letter(h: Harness, r: redis.Redis) -> None:
    calls: list[float] = []

    def boom(ctx: Any, ev: Any) -> None:
        calls.append(time.monotonic())
        raise ValueError("always broken")

    h.trigger(boom)
    h.send("doomed")
    dead = keys.dead_letter(keys.stream("jobs.test"))
    wait_for(lambda: r.xlen(dead) == 1, what="dead letter")
    assert len(calls) == 3  # maxDeliveries
    entry = r.xrange(dead)[0][1]
    assert "always broken" in entry["error"] and entry["attempt"] == "3"
    assert h.pending() == 0
    # The job is marked failed through the events stream.
    states = [json.loads(f["body"]).get("state") for _, f in r.xrange(keys.EVENTS)]
    assert states == ["queued", "queued", "failed"]


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    assert [backoff_delay(a, 1.0, 60.0, rand=0.5) for a in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_delay(10, 1.0, 60.0, rand=0.5) == 60.0  # capped
    assert backoff_delay(1, 1.0, 60.0, rand=0.0) == pytest.approx(0.8)
    assert backoff_delay(1, 1.0, 60.0, rand=1.0) == pytest.approx(1.2)
    # Even at the extremes of the jitter, the next delay is longer.
    assert backoff_delay(2, 1.0, 60.0, rand=0.0) > backoff_delay(1, 1.0, 60.0, rand=1.0)


def test_a_dead_consumers_message_is_reclaimed(h: Harness, r: redis.Redis) -> None:
    stream = keys.stream("jobs.test")
    r.xgroup_create(stream, "g", id="0", mkstream=True)
    h.send()
    # A consumer reads the message and dies without acking.
    r.xreadgroup("g", "dead-0", {stream: ">"}, count=1)
    done: list[str] = []
    h.trigger(lambda ctx, ev: done.append(ev.id), consumer="alive-0", reclaimIdleSeconds=0.5)
    wait_for(lambda: done, what="reclaimed run")
    wait_for(lambda: h.pending() == 0, what="ack")


def test_long_handler_keeps_its_message(h: Harness, r: redis.Redis) -> None:
    # The heartbeat renews every idle / 3: a stall of the process under 2/3 of idle
    # (over 2.5 s) still keeps ownership. Without the heartbeat the other consumer, which
    # looks every idle / 2, would find the message idle long enough at least twice.
    idle = 4.0
    runs: list[str] = []

    def slow(ctx: Any, ev: Any) -> None:
        runs.append(ev.id)
        time.sleep(2 * idle)  # the work: twice the reclaim idle time, silently

    h.trigger(slow, consumer="a-0", reclaimIdleSeconds=idle)
    h.trigger(slow, consumer="b-0", reclaimIdleSeconds=idle)
    h.send()
    wait_for(lambda: h.pending() == 0 and runs, timeout=60, what="completion")
    assert len(runs) == 1, f"the message ran {len(runs)} times"
    ((_, fields),) = r.xrange(keys.stream("jobs.test"))
    assert fields["attempt"] == "1"  # never handed back as a retry either


def test_restarted_consumer_takes_back_its_pending_and_counts_it(
    h: Harness, r: redis.Redis
) -> None:
    stream = keys.stream("jobs.test")
    r.xgroup_create(stream, "g", id="0", mkstream=True)
    h.send()
    r.xreadgroup("g", "c-0", {stream: ">"}, count=1)  # c-0 dies holding it
    attempts: list[str] = []
    h.trigger(
        lambda ctx, ev: attempts.append(ev.headers["X-Myspinbot-Attempt"]),
        consumer="c-0",
        reclaimIdleSeconds=60,
    )
    wait_for(lambda: attempts, what="recovered run")
    assert attempts == ["2"]


def test_poison_message_is_dead_lettered_after_max_deliveries(h: Harness, r: redis.Redis) -> None:
    stream = keys.stream("jobs.test")
    r.xgroup_create(stream, "g", id="0", mkstream=True)
    h.send()
    msg_id = r.xreadgroup("g", "c-0", {stream: ">"}, count=1)[0][1][0][0]
    for _ in range(3):  # the process died holding it three times
        r.xclaim(stream, "g", "c-0", 0, [msg_id])
    calls: list[Any] = []
    h.trigger(lambda ctx, ev: calls.append(ev), consumer="c-0", reclaimIdleSeconds=60)
    wait_for(lambda: r.xlen(keys.dead_letter(stream)) == 1, what="dead letter")
    assert calls == []


def test_stop_waits_for_a_short_handler(h: Harness, r: redis.Redis) -> None:
    started, done = threading.Event(), []

    def short(ctx: Any, ev: Any) -> None:
        started.set()
        time.sleep(0.5)
        done.append(ev.id)

    t = h.trigger(short, reclaimIdleSeconds=60)
    h.send()
    assert started.wait(15), "handler never started"
    t.stop(drain_timeout_s=5)
    h.triggers.remove(t)
    assert done and h.pending() == 0
    assert r.xlen(keys.stream("jobs.test")) == 1  # finished, so not handed back


def test_stop_hands_back_what_did_not_finish(h: Harness, r: redis.Redis) -> None:
    gate, started = threading.Event(), threading.Event()
    t = h.trigger(lambda ctx, ev: (started.set(), gate.wait(10)), reclaimIdleSeconds=60)
    first = h.send("slow")
    assert started.wait(15), "handler never started"
    t.stop(drain_timeout_s=0.2)
    h.triggers.remove(t)
    gate.set()
    assert h.pending() == 0
    last_id, fields = r.xrange(keys.stream("jobs.test"))[-1]
    assert last_id != first and json.loads(fields["body"])["id"] == "slow"
