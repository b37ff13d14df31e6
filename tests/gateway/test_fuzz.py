"""Fuzzing the live gateway (issue 11, acceptance 9), short form, plus the regressions the
fuzzer found. The long run is bench/fuzz_api.py (≥ 2000 requests)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fuzzing import Fuzzer, error_problem
from tests.support import RunningPlatform

SEED = 20261205


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    # Its own platform: the fuzzer submits jobs, which other tests would count.
    p = RunningPlatform(tmp_path_factory.mktemp("fuzz")).start()
    yield p
    p.stop()


def assert_readable(resp: httpx.Response, status: int) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text)
    problem = error_problem(resp.status_code, resp.headers.get("content-type", ""), resp.text)
    assert problem is None, problem


def test_fuzzing_finds_no_server_error_and_no_unreadable_4xx(platform: RunningPlatform) -> None:
    # As the platform's owner (an admin): every route is reached, not only its 401.
    report = Fuzzer(platform.url, platform.headers, seed=SEED).run(
        examples=5, scenarios=25, steps=6
    )
    print(report.table())
    assert not report.failures, "\n".join(report.failures)
    assert report.server_errors == 0 and report.unreadable == 0
    assert report.requests >= 300, report.table()
    # The stateful pass followed the document's links from a submit to the job it made.
    assert report.passes["stateful"] > 0
    assert report.linked > 0, report.table()


# --- what the fuzzer found -----------------------------------------------------------------
@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/status/a%1Fb"),
        ("GET", "/api/jobs/a%1Fb"),
        ("POST", "/api/jobs/a%1Fb/retry"),
        ("GET", "/api/profiles/a%1Fb"),
        ("GET", "/api/status/a%3Fb"),  # `?` must not turn into the status function's query
    ],
)
def test_an_id_no_object_can_have_is_missing_not_a_500(
    platform: RunningPlatform, method: str, path: str
) -> None:
    # A control character in an id went into the status function's URL: httpx refused
    # it and the gateway answered 500.
    resp = httpx.request(method, platform.url + path, headers=platform.headers, timeout=30)
    assert_readable(resp, 404)


def test_generate_with_an_impossible_profile_id_is_missing(platform: RunningPlatform) -> None:
    resp = platform.post(
        "/api/generate", json={"mode": "direct", "narration": "Hi.", "profileId": "a\x1fb"}
    )
    assert_readable(resp, 404)
    assert "No profile" in resp.json()["error"]


def test_the_document_links_a_submit_to_its_job(platform: RunningPlatform) -> None:
    doc = platform.get("/openapi.json").json()
    links = doc["paths"]["/api/generate"]["post"]["responses"]["202"]["links"]
    assert set(links) == {"JobStatus", "JobDetail", "CancelJob", "RetryJob", "DeleteJob"}
    status = links["JobStatus"]
    assert status["parameters"] == {"job_id": "$response.body#/jobId"}
    # The link, followed by hand: the submit's jobId is what the status route takes.
    job_id = platform.submit()
    assert platform.get(f"/api/status/{job_id}").status_code == 200


@pytest.mark.parametrize(
    "body, why",
    [
        (b'{"mode": "direct", "narration": "\xff\xfe"}', "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'{"mode": "direct", "narration": "Hi.", "stage": 1' + b"0" * 5000 + b"}", "digits"),
    ],
)
def test_a_json_body_that_cannot_be_parsed_says_why(
    platform: RunningPlatform, body: bytes, why: str
) -> None:
    # FastAPI's own answer was "There was an error parsing the body", whatever the cause.
    resp = platform.post(
        "/api/generate", content=body, headers={"content-type": "application/json"}
    )
    assert_readable(resp, 400)
    assert "not valid JSON" in resp.json()["error"] and why in resp.json()["error"]


@pytest.mark.parametrize("path", ["/api/train", "/api/portraits"])
def test_an_unreadable_upload_says_why_without_a_status_code(
    platform: RunningPlatform, path: str
) -> None:
    resp = platform.post(path, content=b"xx", headers={"content-type": "multipart/form-data"})
    assert_readable(resp, 400)
    # Was "Could not read the upload: 400: Missing boundary in multipart."
    assert resp.json()["error"] == "Could not read the upload: Missing boundary in multipart."
