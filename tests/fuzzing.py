"""Fuzzing the live gateway with schemathesis, over its own OpenAPI document.

Shared by the suite's short run (tests/gateway/test_fuzz.py) and the long one
(bench/fuzz_api.py). Three passes, all deterministic for a given seed:

- coverage: schemathesis's boundary and negative cases per operation (missing required
  fields, values just past each limit, wrong types, unexpected methods);
- fuzzing: Hypothesis-generated valid and invalid requests per operation;
- stateful: sequences that follow the document's OpenAPI links (a submit's `jobId` into
  status, detail, cancel and retry), so the calls reach real objects, not only 404s.

Every response is checked with schemathesis's `not_a_server_error` and our own
`readable_error`: a 4xx must be JSON with a non-empty `error` sentence. Failures are
collected, not raised, so one run reports them all.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import hypothesis.errors
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup

# A readable sentence: at least two words of letters, not a repr or a stack trace.
_SENTENCE = re.compile(r"[A-Za-z]{2,}\W+[A-Za-z]{2,}")


def error_problem(status: int, content_type: str, text: str) -> str | None:
    """What is wrong with a 4xx answer a person would have to read, or None when fine."""
    if not 400 <= status < 500:
        return None
    if "json" not in content_type:
        return f"{status} is not JSON ({content_type or 'no content type'}): {text[:120]!r}"
    try:
        body = json.loads(text)
    except ValueError:
        return f"{status} body is not valid JSON: {text[:120]!r}"
    message = body.get("error") if isinstance(body, dict) else None
    if not isinstance(message, str) or not _SENTENCE.search(message):
        return f"{status} has no readable `error` sentence: {text[:200]!r}"
    if "Traceback" in text:
        return f"{status} carries a traceback: {text[:200]!r}"
    return None


@schemathesis.check
def readable_error(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx is a JSON `{"error": "<sentence>"}` (gateway/errors.py)."""
    problem = error_problem(
        response.status_code, response.headers.get("content-type", [""])[0], response.text
    )
    if problem:
        raise Failure(operation=case.operation.label, title="Unreadable 4xx", message=problem)
    return None


CHECKS = [not_a_server_error, readable_error]
STATEFUL_BATCH = 10  # scenarios per state machine run


@dataclass
class OperationStats:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: int = 0
    unreadable: int = 0


@dataclass
class FuzzReport:
    operations: dict[str, OperationStats] = field(default_factory=dict)
    passes: Counter[str] = field(default_factory=Counter)  # requests per pass
    failures: list[str] = field(default_factory=list)  # one line + curl per failure kind
    # Stateful requests whose path named a job an earlier answer had returned: the links
    # were followed (a random id only ever meets a 404).
    linked: int = 0
    batches_cut: int = 0  # stateful batches Hypothesis stopped early (see Fuzzer.stateful)

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.operations.values())

    @property
    def server_errors(self) -> int:
        return sum(s.server_errors for s in self.operations.values())

    @property
    def unreadable(self) -> int:
        return sum(s.unreadable for s in self.operations.values())

    def table(self) -> str:
        rows = [f"{'operation':44} {'requests':>8} {'5xx':>5} {'4xx-unreadable':>15}  statuses"]
        for label, s in sorted(self.operations.items()):
            statuses = " ".join(f"{k}:{v}" for k, v in sorted(s.statuses.items()))
            rows.append(
                f"{label:44} {s.requests:8d} {s.server_errors:5d} {s.unreadable:15d}  {statuses}"
            )
        rows.append(
            f"{'total':44} {self.requests:8d} {self.server_errors:5d} {self.unreadable:15d}  "
            + " ".join(f"{k}:{v}" for k, v in sorted(self.passes.items()))
            + f" (stateful calls on a returned job: {self.linked})"
        )
        return "\n".join(rows)


class Fuzzer:
    """One fuzzing run against `base_url`, sending `headers` (the credential) with every call."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None, seed: int = 0):
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.seed = seed
        self.session = requests.Session()
        self.report = FuzzReport()
        self._seen: set[tuple[str, str]] = set()
        self._job_ids: set[str] = set()  # every jobId an answer carried
        config = schemathesis.Config.from_dict({"base-url": self.base_url})
        self.schema = schemathesis.openapi.from_url(
            self.base_url + "/openapi.json", config=config, headers=self.headers, timeout=30
        )
        self.operations = [r.ok() for r in self.schema.get_all_operations()]

    # --- one request ---------------------------------------------------------------------------
    def send(self, case: Case, pass_name: str) -> Response:
        response = case.call(
            base_url=self.base_url, session=self.session, headers=self.headers, timeout=60
        )
        self.record(case, response, pass_name)
        return response

    def record(self, case: Case, response: Response, pass_name: str) -> None:
        label = case.operation.label
        # Coverage cases include other methods on the same path ("unexpected methods").
        if case.method.upper() != case.operation.method.upper():
            label = "(methods no route has)"
        stats = self.report.operations.setdefault(label, OperationStats())
        stats.requests += 1
        stats.statuses[response.status_code] += 1
        self.report.passes[pass_name] += 1
        path_values = {str(v) for v in (case.path_parameters or {}).values()}
        if pass_name == "stateful" and path_values & self._job_ids:
            self.report.linked += 1
        if response.status_code < 300 and '"jobId"' in response.text:
            body = json.loads(response.text)
            if isinstance(body, dict) and isinstance(body.get("jobId"), str):
                self._job_ids.add(body["jobId"])
        try:
            case.validate_response(response, checks=CHECKS, headers=self.headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                if failure.title == "Unreadable 4xx":
                    stats.unreadable += 1
                else:
                    stats.server_errors += 1
                key = (label, f"{failure.title} {response.status_code}")
                if key not in self._seen:  # one example per operation and kind
                    self._seen.add(key)
                    curl = case.as_curl_command(headers=self.headers)
                    self.report.failures.append(
                        f"{label}: {failure.title} ({response.status_code}) "
                        f"{response.text[:300]!r}\n    {curl[:600]}"
                    )

    # --- the passes ----------------------------------------------------------------------------
    def coverage(self) -> None:
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        for op in self.operations:
            generation = self.schema.config.generation_for(operation=op)
            for case in self.schema.iter_coverage_cases(
                op, generation_modes=modes, generation_config=generation
            ):
                self.send(case, "coverage")

    def fuzz(self, examples: int) -> None:
        for op in self.operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @hypothesis.seed(self.seed)
                @hypothesis.settings(_settings(examples))
                @hypothesis.given(op.as_strategy(generation_mode=mode))
                def run(case: Case) -> None:
                    self.send(case, "fuzzing")

                try:
                    run()
                except hypothesis.errors.Unsatisfiable:
                    # Nothing to make invalid (no parameters, no body): no negative cases.
                    assert mode is GenerationMode.NEGATIVE, f"{op.label}: no valid case"

    def stateful(self, scenarios: int, steps: int) -> None:
        fuzzer = self

        class Machine(self.schema.as_state_machine()):  # type: ignore[misc]
            def call(self, case: Case, **kwargs: Any) -> Response:
                return fuzzer.send(case, "stateful")

            def validate_response(self, response: Response, case: Case, **kw: Any) -> None:
                pass  # checked (and recorded) in send()

        # In batches, each with its own seed: the server's answers steer the sequences (a
        # submit is 202 or 429, a link is followed or not), so Hypothesis may find that
        # replaying a sequence drew differently and stop that batch
        # (FlakyStrategyDefinition). The requests it made are recorded; the next batch goes on.
        done, batch = 0, 0
        while done < scenarios:
            size = min(STATEFUL_BATCH, scenarios - done)
            settings = hypothesis.settings(_settings(size), stateful_step_count=steps)
            hypothesis.seed(self.seed + batch)(Machine)  # read by run_state_machine_as_test
            try:
                Machine.run(settings=settings)
            except hypothesis.errors.FlakyStrategyDefinition:
                self.report.batches_cut += 1
            done, batch = done + size, batch + 1

    def run(
        self, *, examples: int, scenarios: int, steps: int, coverage: bool = True
    ) -> FuzzReport:
        if coverage:
            self.coverage()
        self.fuzz(examples)
        self.stateful(scenarios, steps)
        return self.report


def _settings(examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,  # no example database: the same seed gives the same run
        derandomize=False,
        phases=[Phase.explicit, Phase.generate],  # failures are collected, never shrunk
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
