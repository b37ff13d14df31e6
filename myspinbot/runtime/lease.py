"""Leases: fencing the work of a delivery that another replica has taken over.

A stream entry being handled is pending in its consumer group, owned by one
consumer and delivered some number of times. That pair *is* the lease: another
replica that reclaims the entry (XAUTOCLAIM) becomes its owner and bumps the
delivery count, so the old holder's lease no longer matches. Every write a
holder makes on behalf of the delivery (progress, results, the final event, the
ack, a retry) goes through `settle`, one Lua script that checks the lease and
writes in the same atomic step, so a replica that was paused past the reclaim
time cannot complete a job a second time: it learns at its next write
(`LeaseLost`) and stops.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis

from myspinbot.lua import lua


class LeaseLost(Exception):
    """This delivery was taken over by another replica; stop without writing anything."""


@dataclass(frozen=True)
class Lease:
    stream: str
    group: str
    message_id: str
    consumer: str
    deliveries: int

    def header(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_header(cls, value: str) -> Lease:
        return cls(**json.loads(value))


@dataclass
class Writes:
    """What to write atomically while the lease is held."""

    append: Sequence[tuple[str, Mapping[str, Any]]] = ()  # (stream, fields) to XADD
    delay: tuple[str, float, str] | None = None  # (zset, score, member) to ZADD
    ack: bool = False
    check: Sequence[str] = ()  # keys whose existence to report back (a cancel flag)


@dataclass(frozen=True)
class Settled:
    held: bool
    exists: tuple[bool, ...]


_script: Any = None


def settle(client: redis.Redis, lease: Lease, writes: Writes) -> Settled:
    """Apply `writes` iff `lease` still holds; either way report the checked keys."""
    global _script
    if _script is None:
        _script = client.register_script(lua("myspinbot.runtime", "stream.lua", "settle"))
    keys_: list[str] = [lease.stream]
    ops: list[Any] = []

    def index(key: str) -> int:
        keys_.append(key)
        return len(keys_)

    for stream, fields in writes.append:
        flat: list[str] = []
        for k, v in fields.items():
            flat += [str(k), str(v)]
        ops.append(["xadd", index(stream), flat])
    if writes.delay is not None:
        zset, score, member = writes.delay
        ops.append(["zadd", index(zset), repr(score), member])
    if writes.ack:
        ops.append(["xack"])
    for key in writes.check:
        ops.append(["exists", index(key)])
    args = [lease.group, lease.consumer, lease.message_id, lease.deliveries, json.dumps(ops)]
    res = _script(keys=keys_, args=args, client=client)
    return Settled(bool(res[0]), tuple(bool(x) for x in res[1:]))
