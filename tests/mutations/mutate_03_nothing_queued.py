"""Item 3: the gateway queues a generate job before checking it, then refuses it (404
unknown profile, 422 guided without an LLM). The answers are right; a job runs anyway,
and its history row appears a moment later (which a count straight after the requests
misses)."""

from mutation import Edit, Mutation, main

BODY = """\
    s = services(request)
    await _check_generate(s, body)
    params = body.model_dump(by_alias=True)
    fingerprint = submit.request_hash({"type": "generate", **params})
    known = await _known(s, idempotency_key, fingerprint)
    if known is not None:
        return known
    job = Job(id=new_job_id(), type="generate", params=params)
    return _answer(s, await _queue(s, job, idempotency_key, fingerprint), idempotency_key)
"""
# The same steps with the check moved after the queueing: the refusal still comes, with
# the right status, but its job is already on the stream.
QUEUED_FIRST = """\
    s = services(request)
    params = body.model_dump(by_alias=True)
    fingerprint = submit.request_hash({"type": "generate", **params})
    job = Job(id=new_job_id(), type="generate", params=params)
    queued = await _queue(s, job, idempotency_key, fingerprint)  # mutation: queued first
    await _check_generate(s, body)
    return _answer(s, queued, idempotency_key)
"""

MUTATIONS = [
    Mutation(
        "a",
        "generate jobs are queued before they are checked (gateway/test_bad_input)",
        [Edit("gateway/routes.py", BODY, QUEUED_FIRST)],
        ["tests/gateway/test_bad_input.py::test_rejected_requests_create_no_job"],
    ),
    Mutation(
        "b",
        "generate jobs are queued before they are checked (test_generate_capabilities)",
        [Edit("gateway/routes.py", BODY, QUEUED_FIRST)],
        ["tests/functions/test_generate_capabilities.py::test_guided_without_an_llm_is_refused_up_front"],
    ),
]  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(MUTATIONS))
