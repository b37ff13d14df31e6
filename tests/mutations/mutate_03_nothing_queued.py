"""Item 3: the gateway queues a generate job before checking it, then refuses it (404
unknown profile, 422 guided without an LLM). The answers are right; a job runs anyway,
and its history row appears a moment later (which a count straight after the requests
misses)."""

from mutation import Edit, Mutation, main

CHECK = "    s = services(request)\n    await _check_generate(s, body)\n"
QUEUED_FIRST = (
    "    s = services(request)\n"
    '    await submit.enqueue(s.redis, Job(id=new_job_id(), type="generate",\n'
    "                                      params=body.model_dump(by_alias=True)))\n"
    "    await _check_generate(s, body)\n"
)
MUTATIONS = [
    Mutation(
        "a",
        "generate jobs are queued before they are checked (gateway/test_bad_input)",
        [Edit("gateway/routes.py", CHECK, QUEUED_FIRST)],
        ["tests/gateway/test_bad_input.py::test_rejected_requests_create_no_job"],
    ),
    Mutation(
        "b",
        "generate jobs are queued before they are checked (test_generate_capabilities)",
        [Edit("gateway/routes.py", CHECK, QUEUED_FIRST)],
        ["tests/functions/test_generate_capabilities.py::test_guided_without_an_llm_is_refused_up_front"],
    ),
]  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(MUTATIONS))
