"""Real people's voices for the voice-matching tests, read from installed Debian packages
(nothing is copied into the repository; see tests/fixtures/SOURCES.md).

Two women and two men, recorded in different rooms on different microphones:
- allison: Allison Smith's Asterisk prompts (asterisk-core-sounds-en-wav, CC-BY-SA 3.0);
- harvard: the Harvard-sentence recording codec2 uses as its reference
  (codec2-examples, raw/speech_orig_16k.wav, LGPL-2.1);
- vk5qi, ve9qrp: two radio amateurs' test messages in codec2-examples (LGPL-2.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from myspinbot.media.ffmpeg import run_ffmpeg


@dataclass(frozen=True)
class Speaker:
    name: str
    sex: str
    path: Path
    package: str
    transcript: str | None  # None: the clip goes in without one (recogniser path)
    start_s: float = 0.0
    seconds: float | None = None

    def clip(self) -> bytes:
        """The recording as a WAV upload (an excerpt where it is long)."""
        if not self.path.exists():
            pytest.skip(f"{self.path} missing: install the Debian package {self.package}")
        args = ["-ss", f"{self.start_s:g}", "-i", str(self.path)]
        if self.seconds:
            args += ["-t", f"{self.seconds:g}"]
        return run_ffmpeg([*args, "-ac", "1", "-c:a", "pcm_s16le", "-f", "wav", "pipe:1"])


CODEC2 = Path("/usr/share/codec2")
ALLISON = Path("/usr/share/asterisk/sounds/en_US_f_Allison")

SPEAKERS = [
    Speaker(
        "allison", "female", ALLISON / "demo-abouttotry.wav", "asterisk-core-sounds-en-wav", None
    ),
    Speaker(
        "harvard",
        "female",
        CODEC2 / "raw/speech_orig_16k.wav",
        "codec2-examples",
        "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue "
        "background. It's easy to tell the depth of a well. Four hours of steady work "
        "faced us.",
    ),
    Speaker("vk5qi", "male", CODEC2 / "wav/vk5qi.wav", "codec2-examples", None),
    Speaker("ve9qrp", "male", CODEC2 / "wav/ve9qrp.wav", "codec2-examples", None, 3.0, 20.0),
]

NARRATION = (
    "Welcome back to the channel. This week we visited a small bakery by the harbour, "
    "where the owner showed us how she bakes bread before sunrise. Then we took the boat "
    "to the island and walked along the cliffs until the evening."
)
