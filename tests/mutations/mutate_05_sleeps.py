"""Item 5: (a) a cancelled generate job leaves its speech in S3 (checked once the handler
has acknowledged the job, not after a sleep); (b) the UI's one-request-at-a-time guard is
gone, so pressing submit again while a request is in flight sends a second one (checked
in the page's own fetch record, not after a 300 ms wait)."""

from mutation import Edit, Mutation, main

ABORT = "            encoder.abort()\n            raise\n"
LEAK = (
    "            encoder.abort()\n"
    '            store.put_bytes(prefix + "speech.wav", wav_path.read_bytes(), "audio/wav")\n'
    "            raise\n"
)
MUTATIONS = [
    Mutation(
        "a",
        "a cancelled job uploads its speech",
        [Edit("myspinbot/generation/pipeline.py", ABORT, LEAK)],
        ["tests/functions/test_generate_function.py::test_cancel_during_animation_leaves_no_video"],
    ),
    Mutation(
        "b",
        "the UI submits again while a request is in flight",
        [Edit("gateway/static/ui/forms.js", "  if (isBusy(form)) return;\n", "")],
        ["tests/ui/test_ui.py::test_a_non_image_upload_shows_the_servers_error_at_the_photos"],
    ),
]  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(MUTATIONS))
