"""End to end: the real train function (tiny preset, CPU) with a real person's voice clip
stores a voice match with the profile and reports its score; a clip without words fails
the job with a sentence that says so."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from myspinbot.voice.matchmodel import VoiceMatch
from tests.functions.test_train_function import follow
from tests.media_fixtures import face_photos, voice_clip
from tests.support import FUNCTIONS, RunningPlatform
from tests.voice.speakers import SPEAKERS

TRAIN = {"rank": 4, "seed": 7, "learningRate": 1e-3, "steps": 2}
# Platform start plus a training job that matches a voice (about a minute of CPU).
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    functions = [FUNCTIONS / "status", FUNCTIONS / "ws-relay", FUNCTIONS / "train"]
    p = RunningPlatform(tmp_path_factory.mktemp("voice"), functions=functions).start()
    yield p
    assert p.stop() == 0


def submit(p: RunningPlatform, voice: bytes, text: str | None) -> str:
    files = [("images", (n, d)) for n, d in face_photos(3)]
    files.append(("voice", ("voice.wav", voice, "audio/wav")))  # type: ignore[arg-type]
    data = {"name": "Speaker", "options": json.dumps(TRAIN)}
    if text:
        data["voice_text"] = text
    resp = p.post("/api/train", files=files, data=data)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["jobId"])


def test_training_matches_the_voice(platform: RunningPlatform) -> None:
    speaker = SPEAKERS[1]  # harvard: a woman reading the Harvard sentences
    job_id = submit(platform, speaker.clip(), speaker.transcript)
    msgs = follow(platform, job_id)
    assert msgs[-1]["state"] == "completed", msgs[-1]
    assert any("Voice matched" in (m.get("message") or "") for m in msgs)
    result = platform.status(job_id)["result"]
    shown = result["voice"]["match"]
    # The result shows the scores, not the conversion matrix.
    assert "conversion" not in shown and "clip_embedding" not in shown
    assert shown["base_voice"] in shown["candidates"]
    assert shown["score"] > shown["base_score"]
    names = {a["name"]: a for a in result["artifacts"]}
    stored = VoiceMatch.model_validate_json(httpx.get(names["voice/match.json"]["url"]).content)
    assert stored.conversion is not None and stored.base_voice == shown["base_voice"]


def test_a_clip_without_words_is_refused_at_upload(platform: RunningPlatform) -> None:
    # Voiced, loud, 5 s, but no words: refused before a job exists, by training's own rule.
    files = [("images", (n, d)) for n, d in face_photos(3)]
    files.append(("voice", ("voice.wav", voice_clip(140.0), "audio/wav")))  # type: ignore[arg-type]
    resp = platform.post("/api/train", files=files, data={"name": "Speaker"})
    assert resp.status_code == 422, resp.text
    assert "no speech could be recognised in 'voice.wav'" in resp.json()["error"]
