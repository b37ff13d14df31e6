"""Item 8: tests that passed either way.
(a) the UI ignores generate being unavailable (banner hidden, submit enabled);
(b) the guided radio button is gone from the page (was skipped, now required);
(c) the train upload loses the voice transcript (was `json.loads(json.dumps(params))`);
(d) the size cap reads the whole body before refusing it (was indistinguishable);
(e, f) espeak-ng is not installed (was a skip, now a failure)."""

from mutation import Edit, Mutation, main

UI = "tests/ui/test_ui.py::"
BAD = "tests/gateway/test_bad_input.py::"
REFUSE = '                await _json(send, 413, {"error": error})\n'
READ_FIRST = (
    "                more = True\n"
    "                while more:  # mutation: read the whole body first\n"
    '                    more = (await receive()).get("more_body", False)\n'
) + REFUSE
NO_ESPEAK = ["espeak-ng", "espeak"]
# The job's params (the request fingerprint above them names voiceText too).
VOICE_PARAM = (
    '            "voice": next((k for k, t in stored if t.startswith("audio/")), None),\n'
    '            "voiceText": voice_text,\n'
)
MUTATIONS = [
    Mutation(
        "a",
        "the UI ignores generate's unavailability",
        [Edit("gateway/static/ui/generate.js", "else if (gen.available === false) blocked",
              "else if (false) blocked")],
        [UI + "test_generate_unavailable_is_shown_and_nothing_can_be_submitted"],
    ),
    Mutation(
        "b",
        "no guided radio button",
        [Edit("gateway/static/index.html", '<input type="radio" name="mode" value="guided">', "")],
        [UI + "test_unavailable_modes_and_portraits_are_disabled_with_the_servers_reason"],
    ),
    Mutation(
        "c",
        "the voice transcript is dropped",
        [Edit("gateway/routes.py", VOICE_PARAM, VOICE_PARAM.replace("voice_text,", "None,"))],
        [BAD + "test_a_valid_train_upload_is_stored_and_queued"],
    ),
    Mutation(
        "d",
        "the whole body is read before the 413",
        [Edit("gateway/middleware.py", REFUSE, READ_FIRST)],
        [BAD + "test_whole_request_over_the_limit_is_refused_up_front"],
    ),
    Mutation(
        "e",
        "espeak-ng is missing (lip sync on real speech)",
        [],
        ["tests/animate/test_talking_head.py::test_the_mouth_follows_real_synthesised_speech"],
        hide_tools=NO_ESPEAK,
    ),
    Mutation(
        "f",
        "espeak-ng is missing (voice profile of real speech)",
        [],
        ["tests/voice/test_profile.py::test_real_synthesised_speech_pitch_order"],
        hide_tools=NO_ESPEAK,
    ),
]  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(MUTATIONS))
