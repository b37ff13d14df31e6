"""The right to delete, on the real platform: the embedded S3 (rclone), SQLite, Redis, a
real tritonserver, and the train and generate functions (tiny preset, CPU).

What a person would check after deleting: nothing of the profile is left in the bucket
(the whole bucket is listed), in SQL (every row of every table is read), in Redis or in
Triton, and the links they were given no longer download anything.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa
from click.testing import CliRunner
from PIL import Image, ImageEnhance, ImageOps

from myspinbot.cli.main import cli
from myspinbot.storage import ArtifactStore
from myspinbot.triton.repository import lora_model_name
from myspinbot.triton.server import EmbeddedTriton
from tests.functions.test_train_function import submit
from tests.media_fixtures import face_photos, voice_clip
from tests.support import FUNCTIONS, RunningPlatform, wait_for
from tests.triton_support import Exported

# Two trainings and several videos on the shared CPU.
pytestmark = pytest.mark.timeout(1800)
TRAIN = {"steps": 10, "rank": 4, "learningRate": 1e-2, "seed": 3}
NARRATION = "Hello, this is a short video."
DAY_S = 86400.0


@pytest.fixture(scope="module")
def own_triton(
    exported: Exported, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedTriton]:
    server = EmbeddedTriton(exported.repository, tmp_path_factory.mktemp("del-triton"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def triton(own_triton: EmbeddedTriton) -> str:
    return own_triton.url


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, own_triton: EmbeddedTriton
) -> Iterator[RunningPlatform]:
    functions = [FUNCTIONS / n for n in ("status", "ws-relay", "train", "generate")]
    env = {
        "MYSPINBOT_TRITON_URL": own_triton.url,
        # Its repository API (LoRA loads and unloads) wants this key.
        "MYSPINBOT_TRITON_ADMIN_KEY": own_triton.admin_key,
        "MYSPINBOT_TRITON_RETRY_S": "3",
        "MYSPINBOT_VIDEO_SIZE": "128",
        "MYSPINBOT_UPSCALER": "lanczos",
        # Jobs of this run are minutes old: only what a test backdates is a day old.
        "MYSPINBOT_RETENTION_DAYS": "1",
        "MYSPINBOT_RETENTION_SWEEP_S": "0.5",
    }
    p = RunningPlatform(tmp_path_factory.mktemp("delete"), functions=functions, env=env)
    yield p.start()
    assert p.stop() == 0


def other_person() -> list[tuple[str, bytes]]:
    """Photos no other profile here was trained on (mirrored, darker), so their contents,
    and the hashes the profile records of them, are this profile's alone."""
    out = []
    for name, data in face_photos(6):
        image = ImageOps.mirror(Image.open(io.BytesIO(data)).convert("RGB"))
        buf = io.BytesIO()
        ImageEnhance.Brightness(image).enhance(0.8).save(buf, "PNG")
        out.append((name.rsplit(".", 1)[0] + ".png", buf.getvalue()))
    return out


def trained(p: RunningPlatform, seed: int, photos: list[tuple[str, bytes]] | None = None) -> str:
    job_id = submit(p, {**TRAIN, "seed": seed}, photos=photos, voice=voice_clip(120.0 + seed))
    assert p.wait_state(job_id, {"completed", "failed"}, timeout=600)["state"] == "completed"
    return job_id


@pytest.fixture(scope="module")
def profiles(platform: RunningPlatform) -> dict[str, str]:
    """Two people: `gone` is deleted by the tests, `kept` must survive every deletion."""
    return {"gone": trained(platform, 1), "kept": trained(platform, 2, other_person())}


def generate(p: RunningPlatform, **body: Any) -> str:
    resp = p.post("/api/generate", json={"mode": "direct", "narration": NARRATION, **body})
    assert resp.status_code == 202, resp.text
    job_id = str(resp.json()["jobId"])
    final = p.wait_state(job_id, {"completed", "failed", "cancelled"}, timeout=300)
    assert final["state"] == "completed", final
    return job_id


def delete(p: RunningPlatform, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return p.delete(path, headers=headers, timeout=60)


def cli_run(p: RunningPlatform, *args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env=p.cli_env())


def store(p: RunningPlatform) -> ArtifactStore:
    return p.store()


def bucket(p: RunningPlatform) -> list[str]:
    """Every key in the bucket."""
    return store(p).list_keys("")


def sql_rows(p: RunningPlatform) -> list[str]:
    """Every row of every table, as text."""
    engine = sa.create_engine(f"sqlite:///{p.data_dir / 'myspinbot.db'}")
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return [
                f"{table.name}: {tuple(row)}"
                for table in meta.sorted_tables
                for row in conn.execute(sa.select(table))
            ]
    finally:
        engine.dispose()


def redis_dump(p: RunningPlatform) -> list[str]:
    """Every Redis key with its value (strings, hashes, sets, streams), as text."""
    client = redis.Redis.from_url(p.redis_url, decode_responses=True)
    readers: dict[str, Callable[[str], Any]] = {
        "string": client.get,
        "hash": client.hgetall,
        "zset": lambda k: client.zrange(k, 0, -1),
        "set": client.smembers,
        "list": lambda k: client.lrange(k, 0, -1),
        "stream": client.xrange,
    }
    out = []
    try:
        for key in client.scan_iter(count=1000):
            read = readers.get(str(client.type(key)), lambda k: None)
            out.append(f"{key} = {read(str(key))}")
    finally:
        client.close()
    return out


def links(p: RunningPlatform, profile_id: str, job_ids: list[str]) -> list[str]:
    """Every download link the API hands out for the profile and the jobs."""
    urls = [a["url"] for a in p.get(f"/api/profiles/{profile_id}").json()["artifacts"]]
    for job_id in job_ids:
        result = p.status(job_id)["result"] or {}
        urls += [a["url"] for a in result.get("artifacts", []) if a.get("url")]
    return urls


def triton_has(url: str, model: str) -> bool:
    """Whether Triton serves `model` (its metadata answers only for a loaded model; the
    repository index lists the repository's models, not ones loaded with override files)."""
    base = f"http://{url.split('://')[-1]}"
    return httpx.get(f"{base}/v2/models/{model}").status_code == 200


def mentions(lines: list[str], needles: list[str]) -> list[str]:
    return [line for line in lines if any(n in line for n in needles)]


def nothing_in_redis(p: RunningPlatform, needles: list[str]) -> None:
    """Redis holds nothing of them once the job streams' acknowledged entries are trimmed
    (within a second); on a timeout, the failure names what is left."""
    left: list[str] = []

    def clean() -> bool:
        left[:] = mentions(redis_dump(p), needles)
        return not left

    try:
        wait_for(clean, timeout=10, what="Redis to forget the deleted objects")
    except AssertionError:
        raise AssertionError(f"Redis still holds: {left}") from None


def test_deleting_a_trained_and_used_profile_leaves_nothing_of_it(
    platform: RunningPlatform, profiles: dict[str, str], triton: str
) -> None:
    """Acceptance 4: the bucket, SQL, Redis and Triton hold nothing of a deleted profile
    that was trained and used (a render loaded its LoRA), and its old links fail."""
    gone, kept = profiles["gone"], profiles["kept"]
    render = {"portrait": "render", "steps": 2, "seed": 1}
    rendered = generate(platform, profileId=gone, options=render)
    photo = generate(platform, profileId=gone, options={"portrait": "photo"})
    other = generate(platform, profileId=kept, options={"portrait": "photo"})
    model = lora_model_name(gone)
    assert platform.status(rendered)["result"]["render"]["model"] == model
    assert triton_has(triton, model)  # the render brought it online

    record = platform.get(f"/api/profiles/{gone}").json()
    digests = [p["sha256"] for p in record["metadata"]["photos"]]
    # Stands in for a Real-ESRGAN upscale of one of its photos (minutes on this CPU; the
    # test platform uses Lanczos, which caches nothing): the key the pipeline would use.
    store(platform).put_bytes(f"stage-cache/{digests[0]}-512-realesrgan.png", b"png", "image/png")

    jobs = [gone, rendered, photo]
    urls = links(platform, gone, jobs)
    assert len(urls) >= 10 and all(httpx.get(u).status_code == 200 for u in urls)
    needles = jobs + digests + [model]
    assert mentions(bucket(platform), needles) and mentions(sql_rows(platform), needles)
    kept_keys = [k for k in bucket(platform) if kept in k or other in k]

    resp = delete(platform, f"/api/profiles/{gone}")
    assert resp.status_code == 204, resp.text

    assert mentions(bucket(platform), needles) == []
    assert mentions(sql_rows(platform), needles) == []
    nothing_in_redis(platform, [gone, rendered, photo, model])
    assert not triton_has(triton, model)
    assert [u for u in urls if httpx.get(u).status_code == 200] == []
    for job_id in (rendered, photo):
        assert platform.get(f"/api/status/{job_id}").status_code == 404
    assert platform.get(f"/api/profiles/{gone}").status_code == 404

    # The other person's profile, its video and their links are untouched.
    assert set(kept_keys) <= set(bucket(platform))
    assert all(httpx.get(u).status_code == 200 for u in links(platform, kept, [other]))

    # Deleting twice is fine: the second answer is 404, from the API and from the CLI.
    again = delete(platform, f"/api/profiles/{gone}")
    assert again.status_code == 404 and "No profile" in again.json()["error"]
    out = cli_run(platform, "profiles", "delete", gone, "--yes")
    assert out.exit_code == 1 and "404" in out.output and "No profile" in out.output


def test_deleting_a_job_removes_its_inputs_and_outputs(
    platform: RunningPlatform, profiles: dict[str, str]
) -> None:
    kept = profiles["kept"]
    name, data = face_photos(1)[0]
    portrait = platform.post("/api/portraits", files={"image": (name, data)}).json()["portraitId"]
    job_id = generate(platform, profileId=kept, options={"portraitImage": portrait})
    mine = [k for k in bucket(platform) if job_id in k or portrait in k]
    assert any(k.startswith("generations/") for k in mine) and f"portraits/{portrait}" in mine
    urls = links(platform, kept, [job_id])

    out = cli_run(platform, "jobs", "delete", job_id, "--yes")
    assert out.exit_code == 0, out.output

    assert mentions(bucket(platform), [job_id, portrait]) == []
    assert mentions(sql_rows(platform), [job_id, portrait]) == []
    nothing_in_redis(platform, [job_id])
    assert platform.get(f"/api/status/{job_id}").status_code == 404
    generated = [u for u in urls if job_id in u]
    assert generated and [u for u in generated if httpx.get(u).status_code == 200] == []
    again = delete(platform, f"/api/jobs/{job_id}")
    assert again.status_code == 404 and "No job" in again.json()["error"]
    # The profile it used is untouched.
    assert all(httpx.get(u).status_code == 200 for u in links(platform, kept, []))


def test_deleting_a_training_job_keeps_its_profile(
    platform: RunningPlatform, profiles: dict[str, str]
) -> None:
    """The uploaded photos and voice clip go; the profile trained from them stays until
    it is deleted itself."""
    kept = profiles["kept"]
    assert store(platform).list_keys(f"jobs/{kept}/inputs/")
    assert delete(platform, f"/api/jobs/{kept}").status_code == 204
    assert mentions(bucket(platform), [f"jobs/{kept}/"]) == []
    assert platform.get(f"/api/status/{kept}").status_code == 404
    assert all(httpx.get(u).status_code == 200 for u in links(platform, kept, []))


def test_a_running_job_or_a_profile_in_use_is_refused_until_cancelled(
    platform: RunningPlatform, profiles: dict[str, str]
) -> None:
    job_id = submit(platform, {**TRAIN, "steps": 2000})
    platform.wait_state(job_id, {"queued", "running"})
    resp = delete(platform, f"/api/jobs/{job_id}")
    assert resp.status_code == 409 and "cancel it first" in resp.json()["error"]
    assert store(platform).list_keys(f"jobs/{job_id}/inputs/")  # nothing went

    assert platform.post(f"/api/jobs/{job_id}/cancel").status_code == 202
    platform.wait_state(job_id, {"cancelled"}, timeout=120)
    assert delete(platform, f"/api/jobs/{job_id}").status_code == 204
    assert mentions(bucket(platform), [job_id]) == []


def backdate(p: RunningPlatform, sql: str, row_id: str, days: float) -> None:
    """Set a row's timestamps `days` back, in the platform's own SQLite."""
    then = time.time() - days * DAY_S
    engine = sa.create_engine(f"sqlite:///{p.data_dir / 'myspinbot.db'}")
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text(sql), {"t": then, "id": row_id}).rowcount == 1
    finally:
        engine.dispose()


def test_retention_sweeps_old_jobs_and_uploads_and_keeps_new_ones(
    platform: RunningPlatform, profiles: dict[str, str]
) -> None:
    """MYSPINBOT_RETENTION_DAYS=1 on this platform; ws-relay sweeps every 0.5 s."""
    kept = profiles["kept"]
    old, new = (generate(platform, profileId=kept, options={"portrait": "photo"}) for _ in "ab")
    name, data = face_photos(2)[1]
    uploads = [
        platform.post("/api/portraits", files={"image": (name, data)}).json()["portraitId"]
        for _ in "ab"
    ]
    old_upload, new_upload = uploads
    backdate(platform, "UPDATE jobs SET finished_at = :t, updated_at = :t WHERE id = :id", old, 2)
    backdate(platform, "UPDATE uploads SET created_at = :t WHERE id = :id", old_upload, 2)

    wait_for(
        lambda: (
            platform.get(f"/api/status/{old}").status_code == 404
            and not store(platform).list_keys(f"portraits/{old_upload}")
        ),
        timeout=60,
        what="the retention sweep",
    )
    assert mentions(bucket(platform), [old, old_upload]) == []
    assert mentions(sql_rows(platform), [old, old_upload]) == []
    # What is newer than a day stays, and so does the profile (never swept).
    assert platform.status(new)["state"] == "completed"
    assert store(platform).list_keys(f"generations/{new}/")
    assert store(platform).list_keys(f"portraits/{new_upload}")
    assert platform.get(f"/api/profiles/{kept}").status_code == 200


def test_a_member_deletes_their_account_and_everything_they_own(
    platform: RunningPlatform, profiles: dict[str, str]
) -> None:
    """DELETE /api/me: their uploads, jobs and videos, their tokens and the account go;
    someone else's objects cannot be deleted by them (404, as if missing) and stay."""
    kept = profiles["kept"]
    token = platform.add_user("mallory")
    auth = {"Authorization": f"Bearer {token}"}
    me = platform.get("/api/me", headers=auth).json()["id"]
    name, data = face_photos(3)[2]
    portrait = platform.post("/api/portraits", files={"image": (name, data)}, headers=auth)
    portrait_id = portrait.json()["portraitId"]
    body = {"mode": "direct", "narration": NARRATION, "options": {"portraitImage": portrait_id}}
    resp = platform.post("/api/generate", json=body, headers=auth)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["jobId"]
    assert platform.wait_state(job_id, {"completed", "failed"}, timeout=300)["state"] == (
        "completed"
    )
    assert mentions(bucket(platform), [job_id, portrait_id])

    # Someone else's profile and training job are as missing to a member, and stay.
    assert delete(platform, f"/api/profiles/{kept}", token).status_code == 404
    assert delete(platform, f"/api/jobs/{kept}", token).status_code == 404
    assert platform.get(f"/api/profiles/{kept}").status_code == 200

    assert delete(platform, "/api/me", token).status_code == 204
    assert mentions(bucket(platform), [job_id, portrait_id]) == []
    assert mentions(sql_rows(platform), [me, job_id, portrait_id]) == []
    assert platform.get("/api/me", headers=auth).status_code == 401  # the token went too
    # The admin's (the platform owner's) objects are untouched.
    assert platform.get(f"/api/profiles/{kept}").status_code == 200
    assert all(httpx.get(u).status_code == 200 for u in links(platform, kept, []))
