"""Item 6: (a) no heartbeat: a long silent handler loses its message to the other
consumer (the trigger test now has a 4 s window and 8 s of work); (b) cancellation is
ignored while animating: the job renders on and only stops at the next step (the cancel
test now counts reports after the cancel; no wall-clock or half-way bound)."""

from mutation import Edit, Mutation, main

RENEW = "    def _renew(self) -> None:\n"
MUTATIONS = [
    Mutation(
        "a",
        "no heartbeat",
        [Edit("myspinbot/runtime/stream_trigger.py", RENEW, RENEW + "        return\n")],
        ["tests/runtime/test_stream_trigger.py::test_long_handler_keeps_its_message"],
    ),
    Mutation(
        "b",
        "cancel ignored during the animate step",
        [Edit("myspinbot/jobs/handler.py", "        if cancelled:\n",
              '        if cancelled and step != "animate":\n')],
        ["tests/functions/test_generate_function.py::test_cancel_during_animation_leaves_no_video"],
    ),
]  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(MUTATIONS))
