"""Every Redis key and stream name the platform uses.

Nothing else in the code base spells a key: grep here to see the whole
Redis footprint of MySpinBot.
"""

from __future__ import annotations

PREFIX = "myspinbot:"

# Job delivery: one stream per job type, consumed by the matching function.
JOB_TYPES = ("train", "generate")


def stream(logical: str) -> str:
    """Key of a logical stream named in a function.yaml (`jobs.train`, `events`)."""
    return f"{PREFIX}stream:{logical}"


def job_stream(job_type: str) -> str:
    return stream(f"jobs.{job_type}")


# Every job event (created, running, progress, completed, ...) from every producer
# goes here first; ws-relay is its only consumer and the one writer of job state.
EVENTS = stream("events")

# What ws-relay applied, in order, for the gateway's WebSocket hub (capped).
FANOUT = stream("fanout")
# Fanout and per-job event streams are views, not queues: capping them loses nothing a
# client cannot get again (a snapshot). Job and event streams are never capped; they
# are trimmed of what every consumer group acknowledged (runtime/stream.lua trim_acked).
FANOUT_MAXLEN = 10_000

# SQL writes ws-relay could not commit yet (SQL away), in order; drained with backoff.
HISTORY_OUTBOX = f"{PREFIX}history:outbox"
# Set by ws-relay; gone means Redis lost its data, and ws-relay reconciles with SQL.
RELAY_MARKER = f"{PREFIX}relay:marker"


def dead_letter(stream_key: str) -> str:
    return f"{stream_key}:dead"


def delayed(stream_key: str) -> str:
    """Sorted set of messages waiting out their retry backoff (score = due time)."""
    return f"{stream_key}:delayed"


# Per-job real-time state.
def job(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def job_events(job_id: str) -> str:
    """Capped per-job stream of applied events; its entry ids are the public eventIds."""
    return f"{PREFIX}job:{job_id}:events"


def job_cancel(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}:cancel"


def idempotency(key: str, owner: str | None = None) -> str:
    """Job id and request hash of the submit that used this Idempotency-Key. Each user
    has their own keys: another user's equal key must neither find nor reveal the job."""
    return f"{PREFIX}idem:{key}" if owner is None else f"{PREFIX}idem:{owner}:{key}"


# Submits whose inputs are stored but which are not queued yet (ZSET, job id -> time).
# Queueing removes the entry atomically; what stays past a grace period was abandoned
# (the gateway died in between) and the sweeper deletes its inputs.
SUBMITS_PENDING = f"{PREFIX}submits:pending"


def user_jobs(user_id: str) -> str:
    """A member's unfinished jobs (ZSET, job id -> submit time) for the per-user limits:
    submit.lua adds a job when it queues it and drops those it finds finished."""
    return f"{PREFIX}user:{user_id}:jobs"


# Function registry: one hash entry per running replica plus a heartbeat key with TTL.
FUNCTIONS = f"{PREFIX}functions"


def function_alive(function: str, replica: str) -> str:
    return f"{PREFIX}functions:alive:{function}:{replica}"


# Platform-wide job metrics, maintained by ws-relay, exported by the gateway.
METRICS_JOBS = f"{PREFIX}metrics:jobs"
METRICS_DURATION = f"{PREFIX}metrics:job_duration"


def device_lock(host: str, device: str) -> str:
    """Held while a training runs on a GPU: one training per device protects its memory."""
    return f"{PREFIX}lock:device:{host}:{device}"


# Per-profile LoRA models loaded in Triton, scored by last use: the least recently used
# beyond MYSPINBOT_LORA_MODELS_MAX is unloaded (ZSET, name -> unix time).
TRITON_LORA_LRU = f"{PREFIX}triton:lora-lru"


def triton_lora_load_lock(model: str) -> str:
    """Held while one replica brings a profile's LoRA model online, so others wait for it
    rather than load the same model again."""
    return f"{PREFIX}lock:triton-lora:{model}"


# Taken (SET NX, expiring after one sweep interval) by the ws-relay replica that runs this
# round of the retention sweep (myspinbot/retention.py), so replicas do not all sweep.
RETENTION_ROUND = f"{PREFIX}retention:round"
