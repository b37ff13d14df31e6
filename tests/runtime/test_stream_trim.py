"""Trimming a stream against a real Redis: only what every consumer group acknowledged
goes; undelivered and pending entries stay, whatever the stream's length."""

from __future__ import annotations

import redis

from myspinbot.lua import lua

STREAM = "myspinbot:stream:jobs.trimtest"


def trim(r: redis.Redis) -> int:
    return int(r.register_script(lua("myspinbot.runtime", "stream.lua", "trim_acked"))([STREAM]))


def test_only_entries_every_group_acked_are_trimmed(r: redis.Redis) -> None:
    ids = [r.xadd(STREAM, {"n": str(i)}) for i in range(300)]
    assert trim(r) == 0  # nobody consumes it yet: nothing may go
    r.xgroup_create(STREAM, "fast", id="0")
    r.xgroup_create(STREAM, "slow", id="0")
    fast = [m for m, _ in r.xreadgroup("fast", "f", {STREAM: ">"}, count=250)[0][1]]
    r.xack(STREAM, "fast", *fast[:200])  # 50 still pending in `fast`
    slow = [m for m, _ in r.xreadgroup("slow", "s", {STREAM: ">"}, count=120)[0][1]]
    r.xack(STREAM, "slow", *slow)
    # `slow` finished 120, `fast` 200 (with 50 pending after): the first 120 are done for all.
    assert trim(r) == 119  # the group's last-delivered entry itself stays
    left = [m for m, _ in r.xrange(STREAM)]
    assert left == ids[119:]
    r.xack(STREAM, "fast", *fast[200:])
    r.xack(STREAM, "slow", *[m for m, _ in r.xreadgroup("slow", "s", {STREAM: ">"})[0][1]])
    trim(r)
    # Everything acknowledged by both, except what `fast` never received.
    assert [m for m, _ in r.xrange(STREAM)][-50:] == ids[-50:]
