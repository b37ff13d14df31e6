"""Item 1: the pipeline feeds the animator silence. The MP4 is still well-formed (codec,
fps, duration, steps all right), but its mouth no longer follows its soundtrack."""

from mutation import Edit, Mutation, main

CALL = "source, speech.samples, speech.sample_rate, fps, speech.words, speech.phonemes"
MUTATIONS = [
    Mutation(
        "a",
        "the animator gets silence instead of the speech",
        [Edit("myspinbot/generation/pipeline.py", CALL, CALL.replace("samples,", "samples * 0,"))],
        ["tests/functions/test_generate_function.py::test_direct_generate_makes_a_browser_playable_mp4"],
    ),
]  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(MUTATIONS))
