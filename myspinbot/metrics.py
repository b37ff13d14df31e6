"""Prometheus metrics every process exports (names follow Prometheus conventions).

Per-process metrics live here as module globals. Platform-wide job metrics are
kept in Redis by ws-relay and exported by the gateway (see `platform_collector`),
so they count each job once however many replicas ran it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from myspinbot import keys

# --- function replicas -----------------------------------------------------------------
FUNCTION_INVOCATIONS = Counter(
    "myspinbot_function_invocations",
    "Handler invocations by function, trigger and outcome (success, error).",
    ["function", "trigger", "outcome"],
)
FUNCTION_DURATION = Histogram(
    "myspinbot_function_duration_seconds",
    "Handler run time.",
    ["function", "trigger"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 7200),
)
FUNCTION_INFLIGHT = Gauge(
    "myspinbot_function_inflight", "Invocations running now.", ["function", "trigger"]
)
STREAM_RETRIES = Counter(
    "myspinbot_stream_retries",
    "Messages scheduled for a retry after a failure.",
    ["function", "stream"],
)
STREAM_DEAD_LETTERS = Counter(
    "myspinbot_stream_dead_letters",
    "Messages moved to the dead-letter stream.",
    ["function", "stream"],
)
STREAM_RECLAIMED = Counter(
    "myspinbot_stream_reclaimed",
    "Messages taken over from a replica that stopped answering.",
    ["function", "stream"],
)
STREAM_LEASES_LOST = Counter(
    "myspinbot_stream_leases_lost",
    "Deliveries whose writes were refused because another replica had taken them over.",
    ["function", "stream"],
)

# --- gateway ---------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "myspinbot_http_requests",
    "HTTP requests by route, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "myspinbot_http_request_duration_seconds",
    "HTTP request latency.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WS_CLIENTS = Gauge("myspinbot_websocket_clients_connected", "Open WebSocket connections.")
WS_EVENTS_SENT = Counter("myspinbot_websocket_events_sent", "Events sent to WebSocket clients.")
WS_CLIENTS_DROPPED = Counter(
    "myspinbot_websocket_clients_dropped",
    "Connections closed because the client could not keep up (it resumes on reconnect).",
)
EVENT_LATENCY = Histogram(
    "myspinbot_event_delivery_seconds",
    "From a handler's report to the event leaving the gateway for a WebSocket client.",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5),
)

# Job duration buckets (seconds): jobs run from a blink (no-op) to hours (training).
JOB_DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)


def job_duration_buckets_json() -> str:
    return json.dumps(list(JOB_DURATION_BUCKETS))


class PlatformCollector(Collector):
    """Job counters, job durations and stream depths, read from Redis at scrape time."""

    def __init__(self, client: redis.Redis, streams: list[tuple[str, str]]) -> None:
        self._redis = client
        self._streams = streams  # (stream key, consumer group)

    def collect(self) -> Iterator[Any]:
        try:
            counters: dict[str, str] = self._redis.hgetall(keys.METRICS_JOBS)  # type: ignore[assignment]
            hist: dict[str, str] = self._redis.hgetall(keys.METRICS_DURATION)  # type: ignore[assignment]
        except redis.RedisError:
            return
        jobs = CounterMetricFamily(
            "myspinbot_jobs", "Jobs that entered each state, by type.", labels=["type", "state"]
        )
        for field, value in sorted(counters.items()):
            job_type, _, state = field.partition("|")
            jobs.add_metric([job_type, state], float(value))
        yield jobs
        yield self._duration(hist)
        yield from self._stream_gauges()

    def _duration(self, hist: dict[str, str]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "myspinbot_job_duration_seconds",
            "Time from acceptance to the end of a job, by type and final state.",
            labels=["type", "state"],
        )
        labels = {tuple(f.split("|")[:2]) for f in hist}
        for job_type, state in sorted(labels):
            prefix = f"{job_type}|{state}|"
            buckets = [
                (str(float(le)), float(hist.get(f"{prefix}{le}", 0))) for le in JOB_DURATION_BUCKETS
            ]
            buckets.append(("+Inf", float(hist.get(f"{prefix}+Inf", 0))))
            family.add_metric(
                [job_type, state], buckets, sum_value=float(hist.get(f"{prefix}sum", 0))
            )
        return family

    def _stream_gauges(self) -> Iterator[Any]:
        length = GaugeMetricFamily(
            "myspinbot_stream_length", "Entries in a stream.", labels=["stream"]
        )
        pending = GaugeMetricFamily(
            "myspinbot_stream_pending",
            "Delivered but not yet acknowledged.",
            labels=["stream", "group"],
        )
        lag = GaugeMetricFamily(
            "myspinbot_stream_lag",
            "Entries not yet delivered to the group.",
            labels=["stream", "group"],
        )
        delayed = GaugeMetricFamily(
            "myspinbot_stream_delayed", "Messages waiting out a retry backoff.", labels=["stream"]
        )
        dead = GaugeMetricFamily(
            "myspinbot_stream_dead_letter_length",
            "Entries in the dead-letter stream.",
            labels=["stream"],
        )
        for stream, group in self._streams:
            try:
                pipe = self._redis.pipeline(transaction=False)
                pipe.xlen(stream)
                pipe.zcard(keys.delayed(stream))
                pipe.xlen(keys.dead_letter(stream))
                n, n_delayed, n_dead = pipe.execute()
                groups = self._redis.xinfo_groups(stream) if n or self._redis.exists(stream) else []
            except redis.RedisError:
                continue
            length.add_metric([stream], n)
            delayed.add_metric([stream], n_delayed)
            dead.add_metric([stream], n_dead)
            for g in groups:
                if g["name"] == group:
                    pending.add_metric([stream, group], g["pending"])
                    lag.add_metric([stream, group], g.get("lag") or 0)
        yield from (length, pending, lag, delayed, dead)
