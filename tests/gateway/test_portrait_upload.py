"""POST /api/portraits refuses, at upload, a photo in which no face can be found."""

from __future__ import annotations

from tests.media_fixtures import face_photos, non_face_photo
from tests.support import RunningPlatform


def test_a_portrait_without_a_face_is_refused_naming_the_photo(platform: RunningPlatform) -> None:
    name, data = non_face_photo()
    resp = platform.post("/api/portraits", files={"image": (name, data, "image/jpeg")})
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["field"] == "image"
    assert "No face can be found in 'coffee.jpg'" in body["error"], body["error"]
    assert "Traceback" not in resp.text


def test_a_portrait_with_a_face_is_accepted(platform: RunningPlatform) -> None:
    name, data = face_photos(1)[0]
    resp = platform.post("/api/portraits", files={"image": (name, data, "image/jpeg")})
    assert resp.status_code == 201, resp.text
    assert len(resp.json()["portraitId"]) == 32
