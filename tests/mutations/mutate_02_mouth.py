"""Item 2, on the animator the tests use (get_animator(Settings()): the landmark
animator, myspinbot/animate/lipsync.py): (a) the mouth rig is off, only the head moves
(and drifts with the loudness) and the eyes blink; (b) the mouth pose trails the speech
by 80 ms (2 frames at 25 fps) while the head motion stays on time; (c) the same delay
on the path the product takes (poses from the phoneme timeline, which the unit test's
bare narration has not), caught on the delivered video."""

from mutation import Edit, Mutation, main

FILE = "myspinbot/animate/lipsync.py"
TEST = (
    "tests/animate/test_talking_head.py::test_the_mouth_moves_with_the_speech_and_rests_in_silence"
)
RENDER = "            rig.render(frame, pose)\n"
POSE = (
    "            pose = Viseme(\n"
    "                float(poses.open[i]),\n"
    "                float(poses.width[i]),\n"
    "                float(poses.tuck[i]),\n"
    "                float(poses.rest[i]),\n"
    "            )\n"
)
# Frame i shows the pose of frame i - 2 (the first two hold the first pose, the rest).
DELAYED = "            j = max(i - 2, 0)\n" + POSE.replace("[i]", "[j]")
PHONEME_TIMES = (
    "    times = (np.arange(frames * SUBSAMPLES, dtype=np.float64) + 0.5) / (fps * SUBSAMPLES)\n"
)
LATE = "    times = times - 0.08  # mutation: the mouth trails the speech\n"
MUTATIONS = [
    Mutation(
        "a",
        "mouth rig disabled (head motion and blinks only)",
        [Edit(FILE, RENDER, "            pass  # mutation: the mouth never moves\n")],
        [TEST],
    ),
    Mutation("b", "mouth delayed by 80 ms (2 frames)", [Edit(FILE, POSE, DELAYED)], [TEST]),
    Mutation(
        "c",
        "phoneme poses delayed by 80 ms (frame t shows the pose of t - 80 ms)",
        [Edit("myspinbot/animate/visemes.py", PHONEME_TIMES, PHONEME_TIMES + LATE)],
        ["tests/functions/test_generate_function.py::test_direct_generate_makes_a_browser_playable_mp4",
         "tests/animate/test_lipsync.py::test_lips_close_for_p_b_and_m"],
    ),
]  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(MUTATIONS))
