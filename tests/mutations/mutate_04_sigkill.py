"""Item 4: replicas stop renewing the messages they hold, so a job still running is
reclaimed by the other replica and runs (and ends) twice; every job still completes."""

from mutation import Edit, Mutation, main

RENEW = "    def _renew(self) -> None:\n"
MUTATIONS = [
    Mutation(
        "a",
        "no heartbeat: running jobs are reclaimed and run twice",
        [Edit("myspinbot/runtime/stream_trigger.py", RENEW, RENEW + "        return\n")],
        ["tests/test_platform.py::test_sigkilled_replicas_lose_no_job_and_finish_none_twice"],
    ),
]

if __name__ == "__main__":
    raise SystemExit(main(MUTATIONS))
