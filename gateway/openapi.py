"""OpenAPI links: which answer feeds which request.

A submit answers with a `jobId`; the status, detail, cancel and retry routes take it. Saying
so in the document lets a client generator (and schemathesis's stateful fuzzing, tests/fuzzing.py)
follow a job from its submit instead of guessing ids. FastAPI has no parameter for links, so
they are added to the generated document once, here.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

JOB_ID = "$response.body#/jobId"


def _ref(path: str, method: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


# name -> (path, method) of the operation a job id leads to
_JOB_OPERATIONS = {
    "JobStatus": ("/api/status/{job_id}", "get"),
    "JobDetail": ("/api/jobs/{job_id}", "get"),
    "CancelJob": ("/api/jobs/{job_id}/cancel", "post"),
    "RetryJob": ("/api/jobs/{job_id}/retry", "post"),
    "DeleteJob": ("/api/jobs/{job_id}", "delete"),
}
# (path, method, status) of the answers that carry a `jobId`
_JOB_SOURCES = [
    ("/api/generate", "post", "202"),
    ("/api/train", "post", "202"),
    ("/api/jobs/{job_id}/cancel", "post", "202"),
    ("/api/jobs/{job_id}/retry", "post", "202"),
]


def add_links(schema: dict[str, Any]) -> None:
    paths = schema.get("paths", {})
    for path, method, status in _JOB_SOURCES:
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        links = response.setdefault("links", {})
        for name, (target, target_method) in _JOB_OPERATIONS.items():
            if target_method in paths.get(target, {}):
                links[name] = {
                    "operationRef": _ref(target, target_method),
                    "parameters": {"job_id": JOB_ID},
                    "description": "The job this answer names",
                }


def install(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_links(generate())  # generate() stores the document on app.openapi_schema
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
