"""Item 2: (a) the mouth patch is off, only the head moves (and nods with the loudness);
(b) the mouth trails the speech by 80 ms (2 frames at 25 fps)."""

from mutation import Edit, Mutation, main

FILE = "myspinbot/animate/weightfree.py"
TEST = (
    "tests/animate/test_talking_head.py::test_the_mouth_moves_with_the_speech_and_rests_in_silence"
)
OPENINGS = "        openings = mouth_openings(samples, sample_rate, fps, frames)\n"
DELAYED = "        openings = np.concatenate([np.zeros(2, np.float32), openings[:-2]])\n"
MUTATIONS = [
    Mutation(
        "a",
        "mouth patch disabled (head motion only)",
        [Edit(FILE, "            mouth.paste(frame, float(openings[i]))\n",
              "            pass  # mutation: the mouth never moves\n")],
        [TEST],
    ),
    Mutation("b", "mouth delayed by 80 ms (2 frames)", [Edit(FILE, OPENINGS, OPENINGS + DELAYED)],
             [TEST]),
]  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(MUTATIONS))
