"""Item 1: the pipeline feeds the animator silence. The MP4 is still well-formed (codec,
fps, duration, steps all right), but its mouth no longer follows its soundtrack.

Since the animator also takes the phoneme timeline, "silence" now means none of the speech
reaches it: silent samples and no phonemes (the original mutation's meaning). Silent
samples with the phonemes kept still give lips that follow the aligned phonemes, so the
delivered video is still lip-synced: no mutation of the user-visible result."""

from mutation import Edit, Mutation, main

CALL = "source, speech.samples, speech.sample_rate, fps, speech.words, speech.phonemes"
SILENT = CALL.replace("samples,", "samples * 0,")
MUTATIONS = [
    Mutation(
        "a",
        "the animator gets silence and no phoneme timeline instead of the speech",
        [Edit("myspinbot/generation/pipeline.py", CALL, SILENT.replace("speech.phonemes", "None"))],
        ["tests/functions/test_generate_function.py::test_direct_generate_makes_a_browser_playable_mp4"],
    ),
]  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(MUTATIONS))
