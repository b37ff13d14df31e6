"""piper: a neural (VITS) Piper voice, served by Triton next to the image models.

The engine phonemizes here (espeak-ng, speech/piper_voice.py) and sends one request per
sentence to the voice's Triton model (triton/voices.py loads it on first use); sentences
are joined with a short pause, then trimmed and resampled like the other engines' output.

The phoneme timeline is not taken from the model: Piper's exported graphs give audio
only, not their durations. The generate pipeline force-aligns the audio to the narration
(speech/align.py), as for every engine, and that timeline drives the lips.

No voice match or conversion is applied (those are learnt for flite's base voices); the
profile's voice is not imitated by this engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from myspinbot.speech import audio
from myspinbot.speech.models import Speech, SpeechError
from myspinbot.speech.piper_voice import PiperVoice, load_voice, phonemize
from myspinbot.voice.profile import SAMPLE_RATE, VoiceProfile

# Between sentences, as a reader pauses (the graph ends each sentence at its last sound).
SENTENCE_PAUSE_S = 0.25


class PiperEngine:
    name = "piper"

    def __init__(
        self,
        voice: str | None,
        triton_url: str | None,
        retry_s: float = 20.0,
        admin_key: str | None = None,
    ) -> None:
        if not voice:
            raise SpeechError(
                "The speech engine `piper` needs a voice: set MYSPINBOT_TTS_VOICE to a Piper "
                "voice file (NAME.onnx, with NAME.onnx.json beside it) or to the name of an "
                "installed voice package's voice (e.g. en_US-joe-medium)."
            )
        # Checked now, at configuration time: a broken voice is a start-up error.
        self.voice: PiperVoice = load_voice(voice)
        if not triton_url:
            raise SpeechError(
                "The speech engine `piper` runs its voice on Triton: set MYSPINBOT_TRITON_URL "
                "(`myspinbot up` starts one)."
            )
        self.triton_url = triton_url
        self.retry_s = retry_s
        self.admin_key = admin_key  # loading the voice uses Triton's restricted repository API

    def synthesize(self, text: str, voice: VoiceProfile | None) -> Speech:
        from myspinbot.triton.client import ModelNotLoaded, TritonClient
        from myspinbot.triton.voices import ensure_voice_model

        text = text.strip()
        if not text:
            raise SpeechError("There is no text to speak.")
        sentences = [self.voice.ids(s) for s in phonemize(text, self.voice.espeak_voice)]
        if not sentences:
            raise SpeechError("The text has nothing the voice can pronounce.")
        v = self.voice
        scales = np.array([v.noise_scale, v.length_scale, v.noise_w], dtype=np.float32)
        triton = TritonClient(self.triton_url, retry_s=self.retry_s, admin_key=self.admin_key)
        try:
            model = ensure_voice_model(triton, v.onnx_path, v.digest, v.speakers)
            parts: list[npt.NDArray[np.float64]] = []
            pause = np.zeros(round(SENTENCE_PAUSE_S * v.sample_rate))
            for ids in sentences:
                feed: dict[str, npt.NDArray[Any]] = {
                    "phoneme_ids": np.array(ids, dtype=np.int64),
                    "scales": scales,
                }
                if v.speakers > 1:
                    feed["speaker_id"] = np.zeros(1, dtype=np.int64)
                try:
                    out = triton.infer(model, feed, ["audio"])
                except ModelNotLoaded:  # Triton restarted since: load it again, once
                    model = ensure_voice_model(triton, v.onnx_path, v.digest, v.speakers)
                    out = triton.infer(model, feed, ["audio"])
                parts += [np.asarray(out["audio"], dtype=np.float64).reshape(-1), pause]
        finally:
            triton.close()
        samples = np.clip(np.concatenate(parts), -1.0, 1.0)
        samples = audio.trim_silence(
            audio.resample(samples, v.sample_rate, SAMPLE_RATE), SAMPLE_RATE
        )
        if samples.size == 0:
            raise SpeechError("The text produced no audible speech with the Piper voice.")
        return Speech(samples=samples.astype(np.float32), sample_rate=SAMPLE_RATE, words=None)
