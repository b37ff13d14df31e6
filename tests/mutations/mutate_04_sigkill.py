"""Item 4: what a killed replica held is never recovered (neither reclaimed by the other
replica nor taken back by its restarted self). A kill that lands on an idle replica
shows nothing; the test now aims its kills at replicas the record shows running a job,
so the interrupted job must be finished by a later attempt, and here never is."""

from mutation import Edit, Mutation, main

FILE = "myspinbot/runtime/stream_trigger.py"
RECLAIM = "    def _reclaim(self) -> None:\n"
RECOVER = "    def _recover_own_pending(self) -> None:\n"
MUTATIONS = [
    Mutation(
        "a",
        "a killed replica's jobs are never recovered",
        [Edit(FILE, RECLAIM, RECLAIM + "        return\n"),
         Edit(FILE, RECOVER, RECOVER + "        return\n")],
        ["tests/test_platform.py::test_sigkilled_replicas_lose_no_job_and_finish_none_twice"],
    ),
]  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(MUTATIONS))
