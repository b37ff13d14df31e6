"""Who may see and use which object (issue 11): the API's ownership checks.

A member sees, uses and changes only what they own; an admin sees everything. Someone
else's object answers exactly like a missing one (same status, same message), so an id
tells a member nothing about what others have. Lists hold the caller's own objects;
an admin's hold everyone's, narrowed with `?owner=<user id>`.

Objects without an owner (history from before accounts that the owner account has not
adopted yet, see db/migrations.adopt_unowned) are visible to admins only.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import anyio.to_thread

from gateway.errors import ApiError
from gateway.services import Services
from myspinbot import keys
from myspinbot.db.uploads import UploadKind
from myspinbot.jobs.submit import UserLimits


class Viewer(Protocol):
    """Who is asking: the signed-in user (myspinbot.accounts.User)."""

    @property
    def id(self) -> str: ...

    @property
    def role(self) -> str: ...


def is_admin(user: Viewer) -> bool:
    return user.role == "admin"  # as gateway.auth.is_admin, for anything with a role


def may_see(user: Viewer, owner: str | None) -> bool:
    return is_admin(user) or (owner is not None and owner == user.id)


# The messages of a missing object (the status function's, for what goes through it).
def no_job(job_id: str) -> ApiError:
    return ApiError(404, f"No job with id {job_id!r}")


def no_live_job(job_id: str) -> ApiError:
    return ApiError(404, f"No live job with id {job_id!r}")


def no_profile(profile_id: str) -> ApiError:
    return ApiError(404, f"No profile with id {profile_id!r}")


# What a job or profile id can look like (ours are uuid4 hex). Checked before an id goes into
# the status function's URL: a control character there made httpx raise (a 500), and `?`,
# `#` or `/` would have asked for another path.
OBJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _checked(object_id: str, missing: ApiError) -> str:
    """An id some object could have, or the missing object's 404."""
    if not OBJECT_ID.fullmatch(object_id):
        raise missing
    return object_id


class Nobody:
    """A list filter that matches nothing: a member asked for someone else's objects."""


NOBODY = Nobody()


def list_owner(user: Viewer, requested: str | None) -> str | Nobody | None:
    """The owner a list is narrowed to: None means everyone's (admins only)."""
    if is_admin(user):
        return requested or None
    if requested and requested != user.id:
        return NOBODY
    return user.id


async def _owned(
    s: Services, user: Viewer, path: str, object_id: str, missing: ApiError
) -> dict[str, Any]:
    """The status function's view of one object the user may see; someone else's answers
    exactly like a missing one (the status function's own 404)."""
    view: dict[str, Any] = await s.query(f"/{path}/{_checked(object_id, missing)}")
    if not may_see(user, view.get("owner")):
        raise missing
    return view


async def job_status(s: Services, user: Viewer, job_id: str) -> dict[str, Any]:
    return await _owned(s, user, "status", job_id, no_job(job_id))


async def job_detail(s: Services, user: Viewer, job_id: str) -> dict[str, Any]:
    return await _owned(s, user, "jobs", job_id, no_job(job_id))


async def live_job(s: Services, user: Viewer, job_id: str) -> None:
    """The live job exists and is the user's to change (cancel), else 404."""
    owner, state = await s.redis.hmget(keys.job(job_id), ["owner", "state"])
    if state is None or not may_see(user, None if owner is None else str(owner)):
        raise no_live_job(job_id)


async def profile(s: Services, user: Viewer, profile_id: str) -> dict[str, Any]:
    return await _owned(s, user, "profiles", profile_id, no_profile(profile_id))


async def upload_exists(
    s: Services, user: Viewer, kind: UploadKind, upload_id: str, key: str
) -> bool:
    """The upload is stored and the user may use it. Someone else's is reported by the
    caller exactly like a missing one. An object without a row (stored before accounts)
    counts as unowned: admins only."""
    if s.store is None:
        return False
    record = await anyio.to_thread.run_sync(s.uploads.get, kind, upload_id)
    if record is None and not is_admin(user):
        return False
    if record is not None and not may_see(user, record.owner):
        return False
    return await anyio.to_thread.run_sync(s.store.exists, key)


def limits(s: Services, user: Viewer) -> UserLimits | None:
    """The per-user job limits a submit of `user` is checked against (None for admins:
    the platform's operators; the platform-wide backlog limit still applies)."""
    if is_admin(user):
        return None
    return UserLimits(
        user_id=user.id,
        max_queued=s.settings.user_max_queued,
        max_active=s.settings.user_max_active,
        grace_s=float(s.settings.job_ttl_s),
    )
