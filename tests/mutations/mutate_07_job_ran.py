"""Item 7: every generate job fails at its last step."""

from mutation import Edit, Mutation, main

READY = '                run.progress("finish", 1.0, "Video ready")\n'
MUTATIONS = [
    Mutation(
        "a",
        "generate jobs fail",
        [Edit("myspinbot/generation/pipeline.py", READY,
              '                raise PermanentError("mutation: the video is lost")\n')],
        ["tests/infra/test_live_metrics.py::test_the_job_ran"],
    ),
]  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(MUTATIONS))
