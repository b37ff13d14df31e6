"""Item 2: (a) the mouth patch is off, only the head moves (it nods with the loudness);
(b) the mouth trails the speech by 80 ms (2 frames at 25 fps)."""

from mutation import Edit, run

TEST = (
    "tests/animate/test_talking_head.py::test_the_mouth_moves_with_the_speech_and_rests_in_silence"
)
OPENINGS = "        openings = mouth_openings(samples, sample_rate, fps, frames)\n"
DELAYED = "        openings = np.concatenate([np.zeros(2, np.float32), openings[:-2]])\n"

if __name__ == "__main__":
    a = run(
        "mouth patch disabled (head motion only)",
        [Edit("myspinbot/animate/weightfree.py",
              "            mouth.paste(frame, float(openings[i]))\n",
              "            pass  # mutation: the mouth never moves\n")],
        [TEST],
    )  # fmt: skip
    b = run(
        "mouth delayed by 80 ms (2 frames)",
        [Edit("myspinbot/animate/weightfree.py", OPENINGS,
              OPENINGS + DELAYED)],
        [TEST],
    )  # fmt: skip
    raise SystemExit(max(a, b))
