"""The voice profile, measured on synthetic "speech" whose pitch and rhythm are known.

A clip is a harmonic series (a buzz with a voice's spectral tilt) at a known f0 with a
slight wobble, amplitude-modulated into syllable-like bursts at a known rate, with quiet
noise before and after. ffmpeg encodes it to each container the gateway accepts.
"""

from __future__ import annotations

import io
import itertools
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from myspinbot.media.ffmpeg import run_ffmpeg
from myspinbot.voice.analysis import FloatArray
from myspinbot.voice.profile import (
    SAMPLE_RATE,
    VoiceError,
    VoiceProfile,
    build_voice_profile,
    espeak_args,
    espeak_params,
    espeak_pitch,
    espeak_speed,
)

# Uploads are usually 44.1 or 48 kHz; synthesising at 44.1 kHz also tests resampling.
RATE = 44_100


def speech_like(f0: float, seconds: float, syllables_per_s: float = 4.0) -> FloatArray:
    t = np.arange(round(seconds * RATE)) / RATE
    # A +-2% wobble, as in real intonation; symmetric, so the median pitch stays f0.
    inst_f0 = f0 * (1 + 0.02 * np.sin(2 * np.pi * 1.3 * t))
    phase = 2 * np.pi * np.cumsum(inst_f0) / RATE
    n_harmonics = int(4000 // f0)
    buzz = sum(np.sin(k * phase) / k for k in range(1, n_harmonics + 1))
    # sin^2 bursts: one per 1/syllables_per_s, silent between them like consonant gaps.
    envelope = np.sin(np.pi * syllables_per_s * t) ** 2
    signal = buzz * envelope
    return np.asarray(0.5 * signal / np.max(np.abs(signal)))


def clip(
    f0: float = 150.0,
    voiced_s: float = 4.0,
    pad_s: float = 1.0,
    syllables_per_s: float = 4.0,
    seed: int = 0,
) -> FloatArray:
    rng = np.random.default_rng(seed)
    pad = np.zeros(round(pad_s * RATE))
    x = np.concatenate([pad, speech_like(f0, voiced_s, syllables_per_s), pad])
    # Room tone around -75 dBFS, so "silence" is not digital zero.
    return np.asarray(x + rng.normal(0, 10 ** (-75 / 20), x.size))


def wav_bytes(x: FloatArray, rate: int = RATE, channels: int = 1) -> bytes:
    pcm = np.round(np.clip(x, -1, 1) * 32767).astype("<i2")
    if channels == 2:
        pcm = np.repeat(pcm, 2)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


ENCODERS = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "96k"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "4"],
    "flac": ["-c:a", "flac"],
    # AAC in MP4 puts its index after the audio: the case that breaks piped decoding.
    "m4a": ["-c:a", "aac", "-b:a", "96k"],
    "webm": ["-c:a", "libopus", "-b:a", "48k"],
}


def encode(wav: bytes, ext: str, tmp_path: Path) -> bytes:
    src, dst = tmp_path / "src.wav", tmp_path / f"voice.{ext}"
    src.write_bytes(wav)
    run_ffmpeg(["-y", "-i", str(src), *ENCODERS[ext], str(dst)])
    return dst.read_bytes()


def read_wav(data: bytes) -> tuple[wave._wave_params, FloatArray]:
    with wave.open(io.BytesIO(data)) as w:
        params = w.getparams()
        pcm = np.frombuffer(w.readframes(params.nframes), dtype="<i2")
    return params, pcm.astype(np.float64) / 32768


@pytest.fixture(scope="module")
def stereo_wav() -> bytes:
    return wav_bytes(clip(f0=150.0, voiced_s=4.0), channels=2)


def test_wav_profile(stereo_wav: bytes) -> None:
    result = build_voice_profile(stereo_wav, "voice.wav", None)
    p = result.profile
    assert p.sample_rate == SAMPLE_RATE
    assert p.duration_s == pytest.approx(6.0, abs=0.01)
    assert p.median_pitch_hz == pytest.approx(150, rel=0.05)
    assert p.pitch_iqr_hz < 15  # the +-2% wobble, no octave jumps
    assert p.words_per_min is None and p.transcript is None

    params, samples = read_wav(result.wav)
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, SAMPLE_RATE)
    assert params.nframes / SAMPLE_RATE == pytest.approx(p.speech_s, abs=0.01)
    # Normalised: peaks under the -1 dBFS ceiling, speech near -20 dBFS RMS unless the
    # ceiling held it lower.
    assert np.max(np.abs(samples)) <= 10 ** (-1 / 20) + 1e-3
    assert -26 < p.loudness_dbfs <= -19.5


@pytest.mark.parametrize("ext", sorted(ENCODERS))
def test_each_container_decodes(stereo_wav: bytes, ext: str, tmp_path: Path) -> None:
    data = encode(stereo_wav, ext, tmp_path)
    p = build_voice_profile(data, f"voice.{ext}", None).profile
    assert p.duration_s == pytest.approx(6.0, abs=0.15)  # codecs pad a few ms
    assert p.speech_s == pytest.approx(4.0, abs=0.3)
    assert p.median_pitch_hz == pytest.approx(150, rel=0.05)


@pytest.mark.parametrize("f0", [85.0, 110.0, 220.0, 330.0])
def test_median_pitch_within_5_percent(f0: float) -> None:
    p = build_voice_profile(wav_bytes(clip(f0=f0)), "voice.wav", None).profile
    assert p.median_pitch_hz == pytest.approx(f0, rel=0.05)


def test_low_and_high_voices_are_told_apart() -> None:
    low = build_voice_profile(wav_bytes(clip(f0=110.0)), "low.wav", None).profile
    high = build_voice_profile(wav_bytes(clip(f0=220.0, seed=1)), "high.wav", None).profile
    assert high.median_pitch_hz / low.median_pitch_hz == pytest.approx(2.0, rel=0.05)


def test_pitch_survives_moderate_noise() -> None:
    x = clip(f0=120.0)
    noisy = x + np.random.default_rng(2).normal(0, 10 ** (-45 / 20), x.size)  # ~25 dB SNR
    p = build_voice_profile(wav_bytes(noisy), "noisy.wav", None).profile
    assert p.median_pitch_hz == pytest.approx(120, rel=0.05)


@pytest.mark.parametrize("rate", [3.0, 4.0, 5.0])
def test_syllable_rate_follows_the_modulation(rate: float) -> None:
    voiced_s = 6.0
    p = build_voice_profile(wav_bytes(clip(voiced_s=voiced_s, syllables_per_s=rate)), "v.wav", None)
    # Rate is per second of trimmed speech, which includes a little padding.
    counted = p.profile.syllables_per_s * p.profile.speech_s
    assert counted == pytest.approx(rate * voiced_s, rel=0.15)


def test_faster_speech_measures_faster() -> None:
    rates = [
        build_voice_profile(wav_bytes(clip(syllables_per_s=r)), "v.wav", None).profile
        for r in (2.5, 5.0)
    ]
    assert rates[0].syllables_per_s < rates[1].syllables_per_s


def test_leading_and_trailing_silence_is_trimmed() -> None:
    p = build_voice_profile(wav_bytes(clip(voiced_s=5.0, pad_s=2.5)), "v.wav", None).profile
    assert p.duration_s == pytest.approx(10.0, abs=0.01)
    assert p.speech_s == pytest.approx(5.0, abs=0.3)


def test_transcript_gives_words_per_minute() -> None:
    text = "  The quick brown fox jumps over the lazy dog - twice.  "
    p = build_voice_profile(wav_bytes(clip(voiced_s=4.0)), "v.wav", text).profile
    assert p.transcript == text.strip()
    assert p.words_per_min == pytest.approx(10 * 60 / p.speech_s, rel=0.01)


def test_a_blank_transcript_is_no_transcript() -> None:
    p = build_voice_profile(wav_bytes(clip(voiced_s=4.0)), "v.wav", "   ").profile
    assert p.transcript is None and p.words_per_min is None


def test_too_little_speech_is_refused_with_its_length() -> None:
    with pytest.raises(VoiceError, match=r"has 1\.\d s of speech; at least 3 s is needed"):
        build_voice_profile(wav_bytes(clip(voiced_s=1.0)), "voice.wav", None)


def test_too_much_speech_is_refused_with_its_length() -> None:
    with pytest.raises(VoiceError, match=r"has 40\.\d s of speech; at most 30 s"):
        build_voice_profile(wav_bytes(clip(voiced_s=40.0, pad_s=0.5)), "voice.wav", None)


def test_a_text_file_is_not_audio() -> None:
    text = b"These are the notes for my voice recording.\n" * 20
    with pytest.raises(VoiceError, match=r"voice\.wav is not an audio file ffmpeg can decode"):
        build_voice_profile(text, "voice.wav", None)


def test_silence_is_refused() -> None:
    x = np.random.default_rng(0).normal(0, 10 ** (-80 / 20), 5 * RATE)
    with pytest.raises(VoiceError, match="silent"):
        build_voice_profile(wav_bytes(x), "voice.wav", None)


def test_noise_without_a_voice_is_refused() -> None:
    x = np.random.default_rng(0).normal(0, 0.1, 6 * RATE)
    with pytest.raises(VoiceError, match="no voiced speech"):
        build_voice_profile(wav_bytes(x), "voice.wav", None)


def profile_with(pitch: float, spm: float = 4.8, wpm: float | None = None) -> VoiceProfile:
    return VoiceProfile(
        duration_s=6.0,
        speech_s=5.0,
        sample_rate=SAMPLE_RATE,
        median_pitch_hz=pitch,
        pitch_iqr_hz=10.0,
        syllables_per_s=spm,
        words_per_min=wpm,
        loudness_dbfs=-20.0,
        gain_db=0.0,
        transcript=None,
    )


def test_espeak_pitch_is_monotonic_and_bounded() -> None:
    hz = np.geomspace(40, 500, 200)
    pitches = [espeak_pitch(float(f)) for f in hz]
    assert all(a <= b for a, b in itertools.pairwise(pitches))
    assert pitches[0] == 0 and pitches[-1] == 99
    assert 45 <= espeak_pitch(102) <= 55  # espeak's own default voice sits near 100 Hz
    assert espeak_pitch(110) < espeak_pitch(220)


def test_espeak_speed_is_monotonic_and_clamped() -> None:
    by_words = [espeak_speed(float(w), 4.8) for w in range(20, 800, 10)]
    by_syllables = [espeak_speed(None, s / 10) for s in range(1, 150)]
    for speeds in (by_words, by_syllables):
        assert all(a <= b for a, b in itertools.pairwise(speeds))
        assert speeds[0] == 80 and speeds[-1] == 450
    assert espeak_speed(None, 4.8) == 175  # an average speaker gets espeak's default


def test_espeak_params_from_a_profile() -> None:
    low, high = espeak_params(profile_with(90.0)), espeak_params(profile_with(160.0, wpm=230))
    assert low["pitch"] < high["pitch"]
    assert high["speed"] == espeak_speed(230, 4.8)
    assert espeak_args(profile_with(90.0)) == ["-p", str(low["pitch"]), "-s", str(low["speed"])]


ESPEAK = shutil.which("espeak-ng")


def test_real_synthesised_speech_pitch_order(tmp_path: Path) -> None:
    # A missing tool fails the run (scripts/test installs it), it is not skipped.
    assert ESPEAK is not None, "espeak-ng is not installed: apt-get install espeak-ng"
    text = "Hello, I am recording a short message so that my voice can be measured today."
    measured = {}
    for pitch in (20, 80):
        out = tmp_path / f"p{pitch}.wav"
        subprocess.run([ESPEAK, "-p", str(pitch), "-w", str(out), text], check=True, timeout=60)
        profile = build_voice_profile(out.read_bytes(), out.name, text).profile
        measured[pitch] = profile.median_pitch_hz
        # The mapping is calibrated on espeak-ng itself, so it should round-trip roughly.
        assert abs(espeak_pitch(profile.median_pitch_hz) - pitch) <= 8
    assert measured[20] < measured[80]
