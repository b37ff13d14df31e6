"""The espeak-ng engine, run for real: audible, trimmed speech that follows the voice profile."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pytest

from myspinbot.speech import EspeakEngine, Speech, SpeechError
from myspinbot.speech.audio import TRIM_PAD_S
from myspinbot.voice import analysis
from myspinbot.voice.analysis import FrameGrid
from myspinbot.voice.profile import SAMPLE_RATE, VoiceProfile

TEXT = (
    "We bake fresh bread every morning, and the whole street smells of it by seven. "
    "Come by the shop and try a warm loaf with butter."
)


def profile(median_pitch_hz: float = 110.0, words_per_min: float | None = None) -> VoiceProfile:
    return VoiceProfile(
        duration_s=6.0,
        speech_s=5.0,
        sample_rate=SAMPLE_RATE,
        median_pitch_hz=median_pitch_hz,
        pitch_iqr_hz=15.0,
        syllables_per_s=4.8,
        words_per_min=words_per_min,
        loudness_dbfs=-20.0,
        gain_db=0.0,
        transcript=None,
    )


def voiced_pitch(speech: Speech) -> float:
    """Median F0 of the voiced speech frames, measured as the voice module measures people."""
    grid = FrameGrid.for_rate(speech.sample_rate)
    frames = grid.frames(speech.samples.astype(np.float64))
    levels = analysis.levels_db(frames)
    f0, _ = analysis.yin_pitch(frames, grid)
    voiced = (levels > analysis.speech_threshold_db(levels)) & np.isfinite(f0)
    return float(np.median(f0[voiced]))


@pytest.fixture(scope="module")
def engine() -> EspeakEngine:
    return EspeakEngine()


def test_speech_is_audible_mono_at_the_voice_rate(engine: EspeakEngine) -> None:
    speech = engine.synthesize(TEXT, None)
    assert speech.sample_rate == SAMPLE_RATE
    assert speech.samples.dtype == np.float32 and speech.samples.ndim == 1
    assert np.max(np.abs(speech.samples)) <= 1.0
    rms_db = 10 * np.log10(np.mean(speech.samples.astype(np.float64) ** 2))
    assert rms_db > -40
    assert speech.words is None  # the CLI gives no word timings (see EspeakEngine)
    # Two sentences of ordinary speech: seconds, not milliseconds or minutes.
    assert 3 < speech.duration_s < 15


def test_silence_is_trimmed_at_both_ends(engine: EspeakEngine) -> None:
    speech = engine.synthesize(TEXT, None)
    grid = FrameGrid.for_rate(speech.sample_rate)
    x = speech.samples.astype(np.float64)
    levels = analysis.levels_db(grid.frames(x))
    start, end = analysis.speech_bounds(levels > analysis.speech_threshold_db(levels), grid, len(x))
    # The sound starts and ends within the pad (plus a frame of slack), so the video,
    # which lasts as long as the speech, neither opens nor closes on silence.
    slack_s = TRIM_PAD_S + grid.frame_len / grid.sample_rate
    assert start / SAMPLE_RATE <= slack_s
    assert (len(x) - end) / SAMPLE_RATE <= slack_s


def test_duration_grows_with_text(engine: EspeakEngine) -> None:
    short = engine.synthesize("Fresh bread.", None)
    long = engine.synthesize(TEXT, None)
    assert long.duration_s > 3 * short.duration_s


def test_profiles_with_different_pitch_sound_different(engine: EspeakEngine) -> None:
    low = voiced_pitch(engine.synthesize(TEXT, profile(median_pitch_hz=85.0)))
    high = voiced_pitch(engine.synthesize(TEXT, profile(median_pitch_hz=150.0)))
    assert high / low > 1.4
    # And each lands near the voice it imitates (the mapping is calibrated on espeak-ng).
    assert low == pytest.approx(85.0, rel=0.15)
    assert high == pytest.approx(150.0, rel=0.15)


def test_faster_speaker_gives_shorter_speech(engine: EspeakEngine) -> None:
    slow = engine.synthesize(TEXT, profile(words_per_min=120.0))
    fast = engine.synthesize(TEXT, profile(words_per_min=240.0))
    assert fast.duration_s < 0.7 * slow.duration_s


def test_text_is_never_read_as_options(engine: EspeakEngine) -> None:
    # On the command line "-v hello" would pick a voice; on stdin it is just words.
    assert engine.synthesize("-v hello", None).duration_s > 0.2


@pytest.mark.parametrize("text", ["", "   \n", "...", "-"])
def test_nothing_to_say_is_a_clear_error(engine: EspeakEngine, text: str) -> None:
    with pytest.raises(SpeechError, match=r"no text to speak|no audible speech"):
        engine.synthesize(text, None)


def test_missing_binary_names_the_package(
    engine: EspeakEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SpeechError, match="Debian package `espeak-ng`"):
        engine.synthesize("Hello.", None)


def test_wav_bytes_round_trip(engine: EspeakEngine) -> None:
    speech = engine.synthesize("Hello there.", None)
    with wave.open(io.BytesIO(speech.wav_bytes())) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SAMPLE_RATE)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert len(pcm) == len(speech.samples)
    np.testing.assert_allclose(pcm / 32767, speech.samples, atol=1 / 32767)
