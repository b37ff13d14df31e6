"""The right to delete: a job or a profile, from S3, Triton, Redis and SQL.

What belongs to what (the S3 layout the pipelines write):

- a job: `jobs/<id>/` (a training's uploaded photos and voice clip, its checkpoints),
  `generations/<id>/` (a video and its speech, stage and script), and the uploads its
  params name (`portraits/<portraitImage>`, `narrations/<narrationAudio>`) unless a job
  that stays names them too, with the cached upscales of an uploaded portrait;
- a profile: `profiles/<id>/` (both LoRA files, the photo masters, the voice clip and
  voice profile, metadata, portrait), the cached upscales of its photos
  (`stage-cache/<sha256>-*`), its Triton model (`unet-lora-<id>`), its training job and
  every job that generated with it (their videos show the person).

A profile outlives its training job: deleting the training job removes the uploaded
photos it was trained from, not the profile, which has its own delete.

Order: Triton, S3 and Redis first, the SQL rows last. A deletion that fails half-way (S3
away) leaves the rows, so the same request again finishes it; once the rows are gone a
second request finds nothing (the routes answer 404).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from myspinbot import keys
from myspinbot.db import JobHistory, ProfileRecord
from myspinbot.jobs.livestate import job_from_hash
from myspinbot.jobs.models import Job
from myspinbot.jobs.submit import _dead_letter
from myspinbot.storage import ArtifactNotFoundError, ArtifactStore
from myspinbot.storage.layout import (
    job_prefix,
    narration_key,
    output_prefix,
    portrait_cache_prefix,
    portrait_key,
    profile_prefix,
)
from myspinbot.triton.repository import lora_model_name

log = logging.getLogger(__name__)
# Uploads a generate job names in `params.options`: option -> where such uploads are kept.
UPLOAD_PREFIXES = {"portraitImage": portrait_key(""), "narrationAudio": narration_key("")}


FANOUT_PAGE = 1000
PAGE = 500
# The kind an `uploads` row records -> the option a generate job names that upload in.
UPLOAD_OPTIONS = {"portrait": "portraitImage", "narration": "narrationAudio"}


class DeletionRefused(Exception):
    """The object is still in use (a job queued or running); the message says what to do."""


class DeletionFailed(Exception):
    """A service refused part of the deletion; the same request again retries it."""


class HistoryCatchingUp(Exception):
    """SQL writes wait in ws-relay's outbox (SQL was away): a row deleted now could be
    written back by the drain, so the deletion waits until the outbox is empty."""


@dataclass(frozen=True)
class Deleted:
    id: str
    objects: int = 0
    """S3 objects removed."""
    jobs: tuple[str, ...] = ()
    """Jobs whose records (Redis and SQL) were removed."""
    models: tuple[str, ...] = ()
    """Triton models asked to unload."""


class Deletion:
    """Deletes jobs and profiles. Synchronous (boto3, SQLAlchemy, redis-py): the gateway
    runs it in a worker thread. A TritonClient is made per call (it is not thread-safe)."""

    def __init__(
        self,
        client: redis.Redis,
        history: JobHistory,
        store: ArtifactStore,
        *,
        triton_url: str | None = None,
        triton_retry_s: float = 5.0,
        triton_admin_key: str | None = None,
    ) -> None:
        self.redis = client
        self.history = history
        self.store = store
        self.triton_url = triton_url
        self.triton_retry_s = triton_retry_s
        # Unloading is a model-repository request: a restricted Triton wants the key.
        self.triton_admin_key = triton_admin_key

    # --- jobs -------------------------------------------------------------------------------
    def job(self, job_id: str, owner: str | None = None) -> Deleted | None:
        """Delete a finished job's inputs, outputs and records; None if there is no such job
        (or, with `owner`, none of theirs: someone else's is as missing)."""
        job = self.find_job(job_id)
        if job is None or (owner is not None and job.owner != owner):
            return None
        if not job.state.terminal:
            raise DeletionRefused(
                f"Job {job_id} is {job.state.value}: cancel it first (POST "
                f"/api/jobs/{job_id}/cancel, or `myspinbot cancel {job_id}`), then delete it."
            )
        self._history_settled()
        objects = self._job_objects([job])
        self._forget_jobs([job])
        self.history.delete_records([job.id])
        return Deleted(job_id, objects, (job_id,))

    def find_job(self, job_id: str) -> Job | None:
        """The live state (the newer one) if Redis has it, else the history's; the owner
        from the history when the live copy predates accounts (the history adopted it)."""
        live = job_from_hash(self.redis.hgetall(keys.job(job_id)))
        if live is not None and live.owner is not None:
            return live
        stored = self.history.get_job(job_id)
        if live is None or stored is None:
            return live or stored
        return live.model_copy(update={"owner": stored.owner})

    # --- profiles ---------------------------------------------------------------------------
    def profile(self, profile_id: str, owner: str | None = None) -> Deleted | None:
        """Delete a profile and everything made of the person; None if there is no such
        profile (or, with `owner`, none of theirs)."""
        record = self.history.get_profile(profile_id)
        if record is None or (owner is not None and record.owner != owner):
            return None
        jobs = self._profile_jobs(record)
        busy = [j for j in jobs if not j.state.terminal]
        if busy:
            j = busy[0]
            raise DeletionRefused(
                f"Profile {record.name!r} is in use: {j.type} job {j.id} is {j.state.value}. "
                f"Cancel it (`myspinbot cancel {j.id}`) or wait for it to end, then delete "
                "the profile."
            )
        self._history_settled()
        digests = self._photo_digests(record)
        models = self._unload(record.id)
        objects = self._job_objects(jobs)
        objects += self.store.delete_prefix(profile_prefix(record.id))
        for digest in digests:
            objects += self.store.delete_prefix(portrait_cache_prefix(digest))
        job_ids = [j.id for j in jobs]
        self._forget_jobs(jobs)
        self.history.delete_records(job_ids, [record.id])
        # A render that read the profile just before its row went may have loaded the model
        # since the first unload; without the row no later job can.
        self._unload(record.id)
        return Deleted(profile_id, objects, tuple(job_ids), models)

    def _profile_jobs(self, record: ProfileRecord) -> list[Job]:
        """Its training job (whose id the profile carries) and every job that names it."""
        found: dict[str, Job] = {}
        for job_id in {record.id, record.job_id} - {None}:
            job = self.find_job(str(job_id))
            if job is not None:
                found[job.id] = job
        for job in self.history.jobs_mentioning(f'"profileId":"{record.id}"'):
            found[job.id] = self.find_job(job.id) or job
        return list(found.values())

    def _photo_digests(self, record: ProfileRecord) -> set[str]:
        """Content hashes of the photos a video's portrait may have been upscaled from:
        the photo masters (hashed at training), and portrait.png, which profiles trained
        before masters were kept are staged from."""
        photos: list[Any] = record.metadata.get("photos") or []
        digests = {str(p["sha256"]) for p in photos if isinstance(p, dict) and p.get("sha256")}
        try:
            portrait = self.store.get_bytes(profile_prefix(record.id) + "portrait.png")
            digests.add(hashlib.sha256(portrait).hexdigest())
        except ArtifactNotFoundError:
            pass
        return digests

    def _unload(self, profile_id: str) -> tuple[str, ...]:
        name = lora_model_name(profile_id)
        # Out of the LRU first, so no replica counts (or evicts) a model that is going.
        self.redis.zrem(keys.TRITON_LORA_LRU, name)
        if not self.triton_url:
            return ()
        # Here, not at the top: ws-relay's retention sweep deletes jobs only, and stays
        # without tritonclient (and gevent) that way.
        from myspinbot.triton.client import (
            ModelNotLoaded,
            TritonClient,
            TritonError,
            TritonUnavailable,
        )

        triton = TritonClient(
            self.triton_url, retry_s=self.triton_retry_s, admin_key=self.triton_admin_key
        )
        try:
            triton.unload_model(name)
        except ModelNotLoaded:
            pass
        except TritonUnavailable as exc:
            # A Triton that is not running holds no model, and per-profile models are not
            # in its repository, so it does not load this one again when it starts.
            log.warning("Could not reach Triton to unload %s: %s", name, exc)
        except TritonError as exc:
            # Refusing to unload what it does not have is fine; still serving it is not.
            if triton.model_ready(name):
                raise DeletionFailed(f"Triton did not unload {name}: {exc}") from exc
        finally:
            triton.close()
        return (name,)

    # --- accounts ---------------------------------------------------------------------------
    def account(self, owner: str) -> Deleted:
        """Delete everything `owner` (a user id) owns: their profiles (each as `profile`),
        their jobs, their uploads. The account itself is the caller's to remove after
        (myspinbot.accounts): this module knows objects, not credentials. Refused, before
        anything goes, while one of their jobs is queued or running."""
        profiles = self.history.list_profiles(owner=owner)
        jobs = self._jobs_of(owner)
        busy = [j for j in jobs if not j.state.terminal]
        for record in profiles:
            busy += [j for j in self._profile_jobs(record) if not j.state.terminal]
        if busy:
            j = busy[0]
            raise DeletionRefused(
                f"{len(busy)} of your jobs are not finished ({j.type} job {j.id} is "
                f"{j.state.value}): cancel them (`myspinbot cancel ID`) or wait for them to "
                "end, then delete the account."
            )
        self._history_settled()
        objects, job_ids, models = 0, list[str](), list[str]()
        for record in profiles:
            gone = self.profile(record.id)
            if gone is not None:
                objects += gone.objects
                job_ids += gone.jobs
                models += gone.models
        for job in self._jobs_of(owner):
            gone_job = self.job(job.id)
            if gone_job is not None:
                objects += gone_job.objects
                job_ids += gone_job.jobs
        for upload_id, kind in self.history.uploads_owned(owner):
            option = UPLOAD_OPTIONS.get(kind)
            if option is not None:
                objects += self._upload(option, upload_id, force=True)
        self.redis.delete(keys.user_jobs(owner))
        return Deleted(owner, objects, tuple(job_ids), tuple(models))

    def _jobs_of(self, owner: str) -> list[Job]:
        """Every job of `owner`: the history's, and live ones it may not have yet."""
        found: dict[str, Job] = {}
        offset = 0
        while True:
            page, total = self.history.list_jobs(limit=PAGE, offset=offset, owner=owner)
            found.update((j.id, j) for j in page)
            offset += len(page)
            if not page or offset >= total:
                break
        live_ids: Any = self.redis.zrange(keys.user_jobs(owner), 0, -1)
        for job_id in [*found, *live_ids]:
            job = self.find_job(str(job_id))
            if job is not None and job.owner == owner:
                found[job.id] = job
        return list(found.values())

    # --- the parts ----------------------------------------------------------------------------
    def _history_settled(self) -> None:
        if self.redis.xlen(keys.HISTORY_OUTBOX):
            raise HistoryCatchingUp(
                "The job history is catching up after a database outage; try the deletion "
                "again in a minute."
            )

    def _job_objects(self, jobs: Sequence[Job]) -> int:
        """Delete the jobs' objects in S3; how many there were."""
        going = {j.id for j in jobs}
        count = 0
        for job in jobs:
            count += self.store.delete_prefix(job_prefix(job.id))
            count += self.store.delete_prefix(output_prefix(job.id))
            options = job.params.get("options") if isinstance(job.params, dict) else None
            for option in UPLOAD_PREFIXES:
                upload = (options or {}).get(option) if isinstance(options, dict) else None
                if isinstance(upload, str) and upload:
                    count += self._upload(option, upload, keep_for=going)
        return count

    def _upload(
        self, option: str, upload_id: str, keep_for: Iterable[str] = (), force: bool = False
    ) -> int:
        """Delete one upload (the object, its cached upscales, its owner record) unless a
        job that is not going names it too (`force`: even then)."""
        going = set(keep_for)
        users = self.history.jobs_mentioning(f'"{option}":"{upload_id}"')
        if not force and any(j.id not in going for j in users):
            return 0
        key = UPLOAD_PREFIXES[option] + upload_id
        count = 0
        if key in self.store.list_keys(key):
            if option == "portraitImage":
                digest = hashlib.sha256(self.store.get_bytes(key)).hexdigest()
                count += self.store.delete_prefix(portrait_cache_prefix(digest))
            count += self.store.delete_keys([key])
        self.history.delete_records([], upload_ids=[upload_id])
        return count

    def unused_uploads(self, before: float) -> list[str]:
        """Delete the uploads (portraits, narrations) made before `before` that no job
        names; their keys. An upload's age is its record's (`uploads.created_at`), else,
        for one stored before accounts, its object's Last-Modified."""
        gone: list[str] = []
        for option, prefix in UPLOAD_PREFIXES.items():
            objects = self.store.list_modified(prefix)
            listed = {key[len(prefix) :]: modified for key, modified in objects}
            made = {**listed, **self.history.uploads_created(list(listed))}
            for upload_id, when in made.items():
                if when < before and self._upload(option, upload_id):
                    gone.append(prefix + upload_id)
        return gone

    def _forget_jobs(self, jobs: Sequence[Job]) -> None:
        """Every Redis record of the jobs: live state, event stream, cancel flag, pending
        mark, dead letters, their events in the fanout view, and the idempotency keys that
        point at them. (The job and event streams are left alone: a finished job's entries
        there are acknowledged, and trimmed within a second by runtime/stream.lua.)"""
        if not jobs:
            return
        ids = {j.id for j in jobs}
        pipe = self.redis.pipeline(transaction=False)
        for job in jobs:
            pipe.delete(keys.job(job.id), keys.job_events(job.id), keys.job_cancel(job.id))
            pipe.zrem(keys.SUBMITS_PENDING, job.id)
            if job.owner:
                pipe.zrem(keys.user_jobs(job.owner), job.id)
        pipe.execute()
        for stream in [keys.job_stream(t) for t in keys.JOB_TYPES] + [keys.EVENTS]:
            dead = keys.dead_letter(stream)
            entries: Any = self.redis.xrange(dead)
            stale = [e for e, fields in entries if _dead_letter(dead, e, fields).job_id in ids]
            if stale:
                self.redis.xdel(dead, *stale)
        self._drop_fanout(ids)
        for stream in [keys.EVENTS] + [keys.job_stream(t) for t in keys.JOB_TYPES]:
            self._drop_delivered(stream, ids)
        for key in self.redis.scan_iter(match=keys.idempotency("*"), count=500):
            value = self.redis.get(key)
            if value is not None and str(value).split(" ", 1)[0] in ids:
                self.redis.delete(key)

    def _drop_fanout(self, ids: set[str]) -> None:
        """The jobs' events in the capped fanout stream (which holds their messages and
        results until newer events push them out)."""
        start = "-"
        while True:
            entries: Any = self.redis.xrange(keys.FANOUT, min=start, count=FANOUT_PAGE)
            if not entries:
                return
            stale = [e for e, fields in entries if fields.get("job") in ids]
            if stale:
                self.redis.xdel(keys.FANOUT, *stale)
            if len(entries) < FANOUT_PAGE:
                return
            start = "(" + entries[-1][0]

    def _drop_delivered(self, stream: str, ids: set[str]) -> None:
        """The jobs' entries in a job or event stream that every consumer group has had and
        acknowledged. The stream's own trim keeps the newest delivered entry (it trims
        below the last-delivered id), so a finished job's last event or message would stay
        until the next one came. Undelivered or pending entries are left alone: something
        still acts on them."""
        entries: Any = self.redis.xrange(stream)
        mine = [e for e, fields in entries if _body_job(fields) in ids]
        if not mine:
            return
        groups: Any = self.redis.xinfo_groups(stream)
        done = []
        for entry in mine:
            if all(self._acknowledged(stream, g, entry) for g in groups):
                done.append(entry)
        if done:
            self.redis.xdel(stream, *done)

    def _acknowledged(self, stream: str, group: dict[str, Any], entry: str) -> bool:
        if _stream_id(entry) > _stream_id(str(group["last-delivered-id"])):
            return False
        pending: Any = self.redis.xpending_range(stream, group["name"], entry, entry, 1)
        return not pending


def _body_job(fields: dict[str, Any]) -> str | None:
    """The job an event (`jobId`) or a job message (`id`) is about."""
    try:
        body = json.loads(fields.get("body", ""))
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    job_id = body.get("jobId") or body.get("id")
    return job_id if isinstance(job_id, str) else None


def _stream_id(entry: str) -> tuple[int, int]:
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq or 0)
