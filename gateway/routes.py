"""The REST API. Thin: validate, store inputs, hand the job over, answer queries."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import ownership, uploads
from gateway.auth import SESSION_COOKIE, CurrentUser, require_user
from gateway.errors import ApiError, describe_validation
from gateway.schemas import Accepted, GenerateRequest, TrainOptions
from gateway.services import Services
from myspinbot import keys
from myspinbot.accounts import AccountError
from myspinbot.db.uploads import UploadKind
from myspinbot.deletion import (
    Deleted,
    Deletion,
    DeletionFailed,
    DeletionRefused,
    HistoryCatchingUp,
)
from myspinbot.generation.options import portrait_key
from myspinbot.jobs import submit
from myspinbot.jobs.models import Job, JobState, JobType, new_job_id
from myspinbot.script import NarrationTooLong, check_narration_length
from myspinbot.speech.narration import narration_key
from myspinbot.storage import ArtifactStore, StorageError
from myspinbot.voice.profile import VoiceProfile

log = logging.getLogger(__name__)
# Every route here needs a signed-in user (gateway/auth.py); handlers read it with
# `Depends(require_user)` too (resolved once per request).
router = APIRouter(prefix="/api", dependencies=[Depends(require_user)])
# How long a submit waits for ws-relay to record the job before answering 202 anyway
# (the job is safely queued either way; this only makes an immediate status query find it).
APPLY_WAIT_S = 2.0
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Retrying with the same key returns the same job.",
    ),
]


def services(request: Request) -> Services:
    s: Services = request.app.state.services
    return s


def accepted(job_id: str) -> JSONResponse:
    return JSONResponse(Accepted(job_id=job_id).model_dump(by_alias=True), status_code=202)


def _answer(s: Services, res: submit.Accepted, idempotency_key: str | None) -> JSONResponse:
    if res.outcome in ("queued", "existing"):
        return accepted(res.job_id)
    if res.outcome == "user_busy":
        return _user_busy(s, res)
    if res.outcome == "conflict":
        raise ApiError(
            409,
            f"Idempotency-Key {idempotency_key!r} was already used for a different request "
            f"(job {res.job_id}); use a new key for a new request.",
            jobId=res.job_id,
        )
    retry_after = s.settings.backlog_retry_after_s
    return JSONResponse(
        {
            "error": f"Too many jobs waiting ({res.depth}; the limit is "
            f"{s.settings.backlog_max}); try again in {retry_after} s.",
            "backlog": res.depth,
        },
        status_code=429,
        headers={"Retry-After": str(retry_after)},
    )


def _user_busy(s: Services, res: submit.Accepted) -> JSONResponse:
    retry_after = s.settings.user_retry_after_s
    if res.limit == "queued":
        what = (
            f"You have {res.depth} jobs waiting to start; the limit is {s.settings.user_max_queued}"
        )
    else:
        what = f"You have {res.depth} unfinished jobs; the limit is {s.settings.user_max_active}"
    return JSONResponse(
        {
            "error": f"{what} per user. Wait for some to finish (or cancel one) and try "
            f"again in {retry_after} s.",
            "limit": res.limit,
            "jobs": res.depth,
        },
        status_code=429,
        headers={"Retry-After": str(retry_after)},
    )


async def _known(
    s: Services, user: ownership.Viewer, idempotency_key: str | None, fingerprint: str
) -> JSONResponse | None:
    """A retry of a submit that was accepted: its answer, before storing anything again.
    (Only a shortcut: the atomic accept checks the key again.)"""
    if not idempotency_key:
        return None
    prev = await s.redis.get(keys.idempotency(idempotency_key, user.id))
    if prev is None:
        return None
    job_id, _, prev_hash = str(prev).partition(" ")
    same = prev_hash == fingerprint
    return _answer(s, submit.Accepted("existing" if same else "conflict", job_id), idempotency_key)


async def _queue(
    s: Services,
    user: ownership.Viewer,
    job: Job,
    idempotency_key: str | None,
    fingerprint: str,
) -> submit.Accepted:
    # Registered before the accept so the applied `created` event cannot slip past.
    with s.hub.expect(job.id) as applied:
        res = await submit.accept(
            s.redis,
            job,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            key_ttl_s=s.settings.idempotency_ttl_s,
            backlog_max=s.settings.backlog_max,
            limits=ownership.limits(s, user),
        )
        if res.outcome == "queued":
            await applied.wait(APPLY_WAIT_S)
    return res


def _crash_if_asked(s: Services) -> None:
    """TEST HOOK (MYSPINBOT_TEST_CRASH_BEFORE_QUEUE): die like an OOM-killed gateway
    between storing a submit's inputs and queueing it, once per file created."""
    flag = s.settings.test_crash_before_queue
    if flag is not None and flag.exists():
        flag.unlink()
        os._exit(70)


async def _discard_inputs(s: Services, job_id: str) -> None:
    """Delete inputs stored for a submit that did not queue. If that fails too, the
    sweeper deletes them later (the submit is still marked pending)."""
    if s.store is None:
        return
    try:
        await anyio.to_thread.run_sync(s.store.delete_prefix, f"jobs/{job_id}/inputs/")
        await submit.inputs_abandoned(s.redis, job_id)
    except Exception as exc:
        log.warning("Could not delete the inputs of %s (the sweeper will): %s", job_id, exc)


@router.post(
    "/train",
    status_code=202,
    response_model=Accepted,
    summary="Train an identity profile from photos (and optionally a voice clip)",
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["images", "name"],
                        "properties": {
                            "images": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "description": "1-50 JPEG/PNG/WebP photos of the person",
                            },
                            "voice": {
                                "type": "string",
                                "format": "binary",
                                "description": "Optional voice clip (WAV, MP3, OGG, FLAC, M4A)",
                            },
                            "voice_text": {
                                "type": "string",
                                "description": "What is said in the clip",
                            },
                            "name": {"type": "string", "description": "Profile name"},
                            "options": {
                                "type": "string",
                                "description": "JSON object of TrainOptions",
                            },
                        },
                    }
                }
            }
        }
    },
)
async def train(
    request: Request, user: CurrentUser, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    s = services(request)
    limit = s.settings.max_upload_bytes
    try:
        form = await request.form(
            max_files=s.settings.max_images + 5, max_fields=50, max_part_size=64 * 1024
        )
    except Exception as exc:  # the multipart parser's own errors are already readable
        raise _unreadable_upload(exc) from None
    images = [f for f in form.getlist("images") if isinstance(f, StarletteUpload)]
    if not images:
        raise ApiError(400, "Add at least one photo in the `images` field", field="images")
    if len(images) > s.settings.max_images:
        raise ApiError(
            400, f"{len(images)} photos sent; the limit is {s.settings.max_images}", field="images"
        )
    name = str(form.get("name") or "").strip()
    if not name or len(name) > 100:
        raise ApiError(400, "`name` is required (1-100 characters)", field="name")
    options = _train_options(form.get("options"))
    voice_text = str(form.get("voice_text") or "").strip() or None
    if voice_text and len(voice_text) > 2000:
        raise ApiError(400, "`voice_text` is limited to 2000 characters", field="voice_text")

    voice = form.get("voice")
    clip = voice if isinstance(voice, StarletteUpload) and (voice.filename or voice.size) else None
    files = await uploads.stage_training(images, clip, limit)
    if clip is not None:
        await uploads.check_voice_clip(clip.filename or "voice", clip.file, voice_text, s.settings)

    fingerprint = submit.request_hash(
        {
            "type": "train",
            "name": name,
            "options": options.model_dump(mode="json"),
            "voiceText": voice_text,
            "files": [(f.rel, f.sha256) for f in files],
        }
    )
    known = await _known(s, user, idempotency_key, fingerprint)
    if known is not None:
        return known
    job_id = new_job_id()
    # Marked before the first byte is stored: if this process dies before queueing, the
    # sweeper finds the inputs by this mark.
    await submit.inputs_pending(s.redis, job_id)
    try:
        stored = await anyio.to_thread.run_sync(_store_inputs, s, job_id, files)
        _crash_if_asked(s)
        params = {
            "name": name,
            "options": options.model_dump(exclude_none=True),
            "images": [k for k, t in stored if t.startswith("image/")],
            "voice": next((k for k, t in stored if t.startswith("audio/")), None),
            "voiceText": voice_text,
        }
        job = Job(id=job_id, type="train", owner=user.id, params=params)
        res = await _queue(s, user, job, idempotency_key, fingerprint)
    except BaseException:
        await _discard_inputs(s, job_id)
        raise
    if res.outcome != "queued":
        await _discard_inputs(s, job_id)
    return _answer(s, res, idempotency_key)


def _train_options(raw: Any) -> TrainOptions:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return TrainOptions()
    try:
        data = json.loads(str(raw))
    except ValueError as exc:
        raise ApiError(400, f"`options` is not valid JSON: {exc}", field="options") from None
    if not isinstance(data, dict):
        raise ApiError(400, "`options` must be a JSON object", field="options")
    try:
        return TrainOptions.model_validate(data)
    except ValidationError as exc:
        _, message, details = describe_validation(list(exc.errors()))
        raise ApiError(422, f"options: {message}", field="options", details=details) from None


def _store_inputs(s: Services, job_id: str, files: list[uploads.Staged]) -> list[tuple[str, str]]:
    if s.store is None:
        raise ApiError(503, "Artifact storage is not configured (MYSPINBOT_S3_ENDPOINT)")
    stored = []
    for f in files:
        key = f"jobs/{job_id}/inputs/{f.rel}"
        f.file.seek(0)
        s.store.put_fileobj(key, f.file, f.content_type)  # from the spool, in chunks
        stored.append((key, f.content_type))
    return stored


@router.post(
    "/generate",
    status_code=202,
    response_model=Accepted,
    summary="Make a narrated talking-avatar video",
)
async def generate(
    body: GenerateRequest,
    request: Request,
    user: CurrentUser,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    s = services(request)
    await _check_generate(s, user, body)
    params = body.model_dump(by_alias=True)
    fingerprint = submit.request_hash({"type": "generate", **params})
    known = await _known(s, user, idempotency_key, fingerprint)
    if known is not None:
        return known
    job = Job(id=new_job_id(), type="generate", owner=user.id, params=params)
    res = await _queue(s, user, job, idempotency_key, fingerprint)
    return _answer(s, res, idempotency_key)


async def _check_generate(s: Services, user: ownership.Viewer, body: GenerateRequest) -> None:
    """Refuse now what the job could only fail on later, saying why. Someone else's
    profile, portrait or narration is refused exactly like a missing one."""
    voice = None
    if body.profile_id:
        profile = await ownership.profile(s, user, body.profile_id)
        voice_data = (profile.get("metadata") or {}).get("voice")
        voice = VoiceProfile.model_validate(voice_data) if voice_data else None
    elif body.options.portrait == "photo":
        raise ApiError(422, "Portrait `photo` needs a profile (`profileId`).")
    if body.options.portrait_image:
        portrait_id = body.options.portrait_image
        key = portrait_key(portrait_id)
        if not await ownership.upload_exists(s, user, "portrait", portrait_id, key):
            raise ApiError(
                422,
                f"No uploaded portrait {body.options.portrait_image!r}: upload it with "
                "POST /api/portraits first.",
                field="options.portraitImage",
            )
    if body.options.narration_audio:
        narration_id = body.options.narration_audio
        key = narration_key(narration_id)
        if not await ownership.upload_exists(s, user, "narration", narration_id, key):
            raise ApiError(
                422,
                f"No uploaded narration {body.options.narration_audio!r}: upload the "
                "recording with POST /api/narrations first.",
                field="options.narrationAudio",
            )
    elif body.narration:
        try:
            check_narration_length(body.narration, voice, s.settings.narration_max_seconds)
        except NarrationTooLong as exc:
            raise ApiError(422, str(exc)) from None
    caps = (await s.functions()).get("generate", {}).get("capabilities", {}).get("generate", {})
    unavailable = [
        (f"`{body.mode}` mode", caps.get("modes", {}).get(body.mode)),
        (
            f"Portrait `{body.options.portrait}`",
            caps.get("portraits", {}).get(body.options.portrait),
        ),
        # A recorded narration needs no speech engine; text does.
        ("Speech synthesis", None if body.options.narration_audio else caps.get("speech")),
    ]
    for what, cap in unavailable:
        if cap is not None and not cap.get("available", True):
            reason = cap.get("reason") or "the generate function does not offer it"
            raise ApiError(422, f"{what} is not available: {reason}")


def _unreadable_upload(exc: Exception) -> ApiError:
    # Starlette raises the parser's errors as HTTPExceptions, whose str() starts with the
    # status code ("400: Missing boundary in multipart."): only the words go to the user.
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else str(exc)
    return ApiError(400, f"Could not read the upload: {detail}")


async def _one_file(request: Request, s: Services, field: str, what: str) -> StarletteUpload:
    """The single file of a one-file multipart upload, within the per-file limit."""
    try:
        form = await request.form(max_files=1, max_fields=5, max_part_size=64 * 1024)
    except Exception as exc:
        raise _unreadable_upload(exc) from None
    upload = form.get(field)
    if not isinstance(upload, StarletteUpload):
        raise ApiError(400, f"Add {what} in the `{field}` field", field=field)
    uploads.check_size(upload, s.settings.max_upload_bytes, field)
    return upload


@router.post(
    "/portraits",
    status_code=201,
    summary="Upload a portrait for `generate` (options.portrait `upload`)",
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["image"],
                        "properties": {
                            "image": {
                                "type": "string",
                                "format": "binary",
                                "description": "A JPEG/PNG/WebP portrait, face centred",
                            }
                        },
                    }
                }
            }
        }
    },
)
async def upload_portrait(request: Request, user: CurrentUser) -> JSONResponse:
    s = services(request)
    upload = await _one_file(request, s, "image", "the portrait")
    data = await upload.read()  # within the per-file limit; decoded whole to find the face
    content_type = uploads.check_image(upload.filename or "portrait", data, field="image")
    await anyio.to_thread.run_sync(uploads.check_face, upload.filename or "portrait", data)
    if s.store is None:
        raise ApiError(503, "Artifact storage is not configured (MYSPINBOT_S3_ENDPOINT)")
    portrait_id = new_job_id()
    key = portrait_key(portrait_id)
    await _store_upload(
        s,
        user,
        "portrait",
        portrait_id,
        key,
        lambda store: store.put_bytes(key, data, content_type),
    )
    return JSONResponse({"portraitId": portrait_id}, status_code=201)


@router.post(
    "/narrations",
    status_code=201,
    summary="Upload a narration recording for `generate` (options.narrationAudio)",
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["audio"],
                        "properties": {
                            "audio": {
                                "type": "string",
                                "format": "binary",
                                "description": "The narration, spoken (WAV, MP3, OGG, FLAC, M4A)",
                            }
                        },
                    }
                }
            }
        }
    },
)
async def upload_narration(request: Request, user: CurrentUser) -> JSONResponse:
    s = services(request)
    upload = await _one_file(request, s, "audio", "the recording")
    name = upload.filename or "narration"
    seconds = await uploads.check_narration(name, upload.file, s.settings.narration_max_seconds)
    if s.store is None:
        raise ApiError(503, "Artifact storage is not configured (MYSPINBOT_S3_ENDPOINT)")
    narration_id = new_job_id()
    content_type = uploads.check_audio(name, upload.file, field="audio")
    key = narration_key(narration_id)
    await _store_upload(
        s,
        user,
        "narration",
        narration_id,
        key,
        lambda store: store.put_fileobj(key, upload.file, content_type),
    )
    body = {"narrationId": narration_id, "durationSeconds": round(seconds, 3)}
    return JSONResponse(body, status_code=201)


async def _store_upload(
    s: Services,
    user: ownership.Viewer,
    kind: UploadKind,
    upload_id: str,
    key: str,
    put: Callable[[ArtifactStore], object],
) -> None:
    """Store an upload (`put`, blocking: run in a thread) and record its uploader; an
    upload that cannot be recorded is not kept (nobody could use it)."""
    assert s.store is not None
    store = s.store
    await anyio.to_thread.run_sync(put, store)
    try:
        await anyio.to_thread.run_sync(s.uploads.add, kind, upload_id, user.id)
    except BaseException:
        await anyio.to_thread.run_sync(store.delete_prefix, key)
        raise


OwnerFilter = Annotated[
    str | None,
    Query(
        max_length=200,
        description="Admins: only this user's (a user id). Members see only their own.",
    ),
]


@router.get("/status/{job_id}", summary="A job's current state")
async def status(job_id: str, request: Request, user: CurrentUser) -> Any:
    s = services(request)
    return s.links.job(await ownership.job_status(s, user, job_id))


@router.get("/jobs", summary="Jobs, newest first (yours; an admin's: everyone's)")
async def jobs(
    request: Request,
    user: CurrentUser,
    owner: OwnerFilter = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
    type: JobType | None = None,
    state: Annotated[
        str | None, Query(pattern="^(queued|running|completed|failed|cancelled)$")
    ] = None,
) -> Any:
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    whose = ownership.list_owner(user, owner)
    if isinstance(whose, ownership.Nobody):
        return {"jobs": [], "total": 0, "limit": limit, "offset": offset}
    if whose is not None:
        params["owner"] = whose
    if type:
        params["type"] = type
    if state:
        params["state"] = state
    s = services(request)
    return await s.links.jobs(await s.query("/jobs", params))


@router.get("/jobs/{job_id}", summary="A job with its recorded events")
async def job_detail(job_id: str, request: Request, user: CurrentUser) -> Any:
    s = services(request)
    return s.links.job(await ownership.job_detail(s, user, job_id))


@router.post("/jobs/{job_id}/cancel", status_code=202, summary="Cancel a queued or running job")
async def cancel(job_id: str, request: Request, user: CurrentUser) -> Any:
    s = services(request)
    await ownership.live_job(s, user, job_id)
    try:
        before = await submit.cancel(s.redis, job_id, s.settings.job_ttl_s)
    except KeyError:
        raise ApiError(404, f"No live job with id {job_id!r}") from None
    except submit.CancelError as exc:
        raise ApiError(409, str(exc)) from None
    return {"jobId": job_id, "cancelRequested": True, "stateWhenRequested": before.value}


@router.post(
    "/jobs/{job_id}/retry",
    status_code=202,
    summary="Run a failed job again with its stored inputs (e.g. from the dead letter)",
)
async def retry(job_id: str, request: Request, user: CurrentUser) -> Any:
    s = services(request)
    d = await ownership.job_detail(s, user, job_id)
    job = Job(
        id=d["jobId"],
        type=d["type"],
        state=JobState(d["state"]),
        attempt=d["attempt"],
        owner=d.get("owner"),
        params=d.get("params") or {},
        created_at=d["createdAt"],
    )
    try:
        attempt = await submit.retry(s.redis, job, ownership.limits(s, user))
    except submit.RetryError as exc:
        raise ApiError(409, str(exc)) from None
    except submit.UserBusy as busy:
        return _user_busy(s, busy.refused)
    return JSONResponse({"jobId": job_id, "state": "queued", "attempt": attempt}, 202)


@router.get(
    "/dead-letters",
    summary="Messages that failed for good, with their errors (of your jobs; an admin's: all)",
)
async def dead_letters(
    request: Request,
    user: CurrentUser,
    owner: OwnerFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    whose = ownership.list_owner(user, owner)
    if isinstance(whose, ownership.Nobody):
        return {"deadLetters": []}
    # Only an admin sees letters that name no job owner (the events stream's).
    letters = await submit.dead_letters(services(request).redis, limit, whose)
    return {"deadLetters": [d.view() for d in letters]}


@router.get("/profiles", summary="Trained profiles (yours; an admin's: everyone's)")
async def profiles(request: Request, user: CurrentUser, owner: OwnerFilter = None) -> Any:
    whose = ownership.list_owner(user, owner)
    if isinstance(whose, ownership.Nobody):
        return {"profiles": []}
    s = services(request)
    return await s.links.profiles(await s.query("/profiles", {"owner": whose} if whose else None))


@router.get("/profiles/{profile_id}", summary="One profile")
async def profile(profile_id: str, request: Request, user: CurrentUser) -> Any:
    s = services(request)
    return s.links.profile(await ownership.profile(s, user, profile_id))


@router.get("/capabilities", summary="What each running function provides")
async def capabilities(request: Request, user: CurrentUser) -> Any:
    fns = await services(request).functions()
    return {
        "functions": {
            name: {
                "replicas": f["replicas"],
                "description": f["description"],
                "capabilities": f["capabilities"],
            }
            for name, f in sorted(fns.items())
        }
    }


# --- the right to delete (myspinbot/deletion.py) ----------------------------------------------
async def _delete(
    s: Services, missing: ApiError, do: Callable[[Deletion], Deleted | None]
) -> Deleted:
    """Run a deletion in a worker thread. Nothing (any more) by that id, or someone else's:
    `missing`, so a second DELETE of the same object answers 404 like an unknown id."""
    if s.deletion is None:
        raise ApiError(503, "Artifact storage is not configured (MYSPINBOT_S3_ENDPOINT)")
    deletion = s.deletion
    try:
        deleted = await anyio.to_thread.run_sync(lambda: do(deletion))
    except DeletionRefused as exc:
        raise ApiError(409, str(exc)) from None
    except (HistoryCatchingUp, DeletionFailed) as exc:
        raise ApiError(503, str(exc)) from None
    except StorageError as exc:
        # The SQL records go last, so the same DELETE again finishes what was started.
        raise ApiError(503, f"Could not delete from storage ({exc}); try again.") from None
    if deleted is None:
        raise missing
    log.info("Deleted %s: %d objects, jobs %s", deleted.id, deleted.objects, list(deleted.jobs))
    return deleted


def _owner(user: ownership.Viewer) -> str | None:
    """Whose objects the user may delete: their own; an admin's, anyone's (None)."""
    return None if ownership.is_admin(user) else user.id


@router.delete(
    "/jobs/{job_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a finished job: its inputs, outputs and records (a second time: 404)",
    responses={404: {"description": "No such job"}, 409: {"description": "Still running"}},
)
async def delete_job(job_id: str, request: Request, user: CurrentUser) -> Response:
    owner = _owner(user)
    await _delete(services(request), ownership.no_job(job_id), lambda d: d.job(job_id, owner))
    return Response(status_code=204)


@router.delete(
    "/profiles/{profile_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a profile: photos, voice, LoRA, renders, its Triton model, the jobs made "
    "with it, and their records (a second time: 404)",
    responses={404: {"description": "No such profile"}, 409: {"description": "In use"}},
)
async def delete_profile(profile_id: str, request: Request, user: CurrentUser) -> Response:
    owner = _owner(user)
    missing = ownership.no_profile(profile_id)
    await _delete(services(request), missing, lambda d: d.profile(profile_id, owner))
    return Response(status_code=204)


@router.delete(
    "/me",
    status_code=204,
    response_class=Response,
    summary="Delete your account and everything you own: profiles, jobs, uploads, tokens",
    responses={409: {"description": "A job is unfinished, or you are the last admin"}},
)
async def delete_me(request: Request, user: CurrentUser) -> Response:
    s = services(request)

    def last_admin() -> bool:
        admins = [u for u in s.accounts.list_users() if u.role == "admin"]
        return ownership.is_admin(user) and len(admins) <= 1

    # Checked before anything goes: the account could not be removed after.
    if await anyio.to_thread.run_sync(last_admin):
        raise ApiError(
            409,
            f"{user.name!r} is the last admin; make another user admin first "
            "(`myspinbot users add NAME --role admin`), then delete this account.",
        )
    await _delete(s, ownership.no_profile(user.id), lambda d: d.account(user.id))
    try:
        await anyio.to_thread.run_sync(s.accounts.remove_user, user.id)
    except AccountError as exc:
        raise ApiError(exc.status, exc.message) from None
    # Its sessions and tokens went with it; the browser may forget the cookie too.
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
