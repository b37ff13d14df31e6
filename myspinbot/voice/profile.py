"""The voice profile: a cleaned reference clip plus what a speech engine can imitate.

`build_voice_profile` decodes the uploaded clip, trims and normalises it, and measures
pitch, speaking rate and loudness; `espeak_params` turns those into espeak-ng settings.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import wave
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict

from myspinbot.errors import PermanentError
from myspinbot.media.ffmpeg import FfmpegError, run_ffmpeg
from myspinbot.voice import analysis
from myspinbot.voice.analysis import FloatArray, FrameGrid
from myspinbot.voice.matchmodel import VoiceMatch

# 22.05 kHz rather than 16 kHz: the clip is kept as the reference for voice cloning, and
# the TTS models that clone from a reference (and espeak-ng itself) run at 22.05-24 kHz.
# The 8-11 kHz band that 16 kHz discards carries sibilance and breathiness that make a
# voice recognisable; downsampling later is cheap, lost bandwidth cannot be restored.
SAMPLE_RATE = 22_050

MIN_SPEECH_S = 3.0
MAX_SPEECH_S = 30.0
# Decoding stops here, so a long recording cannot fill memory; anything this long is
# refused anyway.
MAX_DECODE_S = 180.0

# Normalisation: speech brought to -20 dBFS RMS (a common level for speech datasets,
# leaving ~20 dB of headroom for peaks), but never so far that a peak passes -1 dBFS.
TARGET_SPEECH_DBFS = -20.0
PEAK_CEILING_DBFS = -1.0
# Below this the clip has no usable signal, whatever the gain.
SILENT_DBFS = -60.0

# Speech keeps a little context either side of the first and last active frame, so
# onsets and word ends are not clipped.
TRIM_PAD_S = 0.05

# Fewer voiced frames than this and the pitch is not meaningful.
MIN_VOICED_S = 0.5


class VoiceError(PermanentError):
    """The voice clip cannot be used; the message tells the user why."""


class VoiceProfile(BaseModel):
    """Measurements of the speaker, taken on the trimmed, normalised clip."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    duration_s: float  # the uploaded clip, as decoded
    speech_s: float  # after trimming leading and trailing silence
    sample_rate: int
    median_pitch_hz: float
    pitch_iqr_hz: float  # spread of the pitch: a monotone voice has a small one
    syllables_per_s: float
    words_per_min: float | None  # only with a transcript
    loudness_dbfs: float  # RMS of the speech frames of the stored clip
    gain_db: float  # applied by normalisation: the upload's level was loudness - gain
    transcript: str | None
    # The base voice and conversion learnt for this person (voice.matching); None for
    # profiles made before matching existed, or when matching was not possible.
    match: VoiceMatch | None = None


@dataclass(frozen=True)
class VoiceResult:
    profile: VoiceProfile
    wav: bytes  # 16-bit mono PCM WAV at SAMPLE_RATE, trimmed and normalised


def build_voice_profile(data: bytes, filename: str, transcript: str | None = None) -> VoiceResult:
    """Decode, trim, normalise and measure a voice clip. Raises VoiceError for bad clips."""
    samples = decode_audio(data, filename)
    grid = FrameGrid.for_rate(SAMPLE_RATE)
    levels = analysis.levels_db(grid.frames(samples))
    if analysis.loud_level_db(levels) < SILENT_DBFS:
        raise VoiceError(f"{filename} is silent: no speech could be heard in it")
    threshold = analysis.speech_threshold_db(levels)
    speech = _trim(samples, levels > threshold, grid)
    _check_length(len(speech) / SAMPLE_RATE, len(samples) / SAMPLE_RATE)

    gain_db = _normalisation_gain_db(speech, grid, threshold)
    speech = speech * 10 ** (gain_db / 20)
    text = transcript.strip() if transcript and transcript.strip() else None
    profile = _measure(
        speech,
        grid,
        threshold_db=threshold + gain_db,
        duration_s=len(samples) / SAMPLE_RATE,
        gain_db=gain_db,
        transcript=text,
    )
    return VoiceResult(profile=profile, wav=encode_wav(speech, SAMPLE_RATE))


def decode_audio(data: bytes, filename: str) -> FloatArray:
    """Any container/codec ffmpeg reads -> mono float samples at SAMPLE_RATE in [-1, 1]."""
    with tempfile.TemporaryDirectory(prefix="myspinbot-voice-") as tmp:
        # A file, not stdin: MP4/M4A often put their index (moov) after the audio, and
        # ffmpeg reading a pipe cannot seek back to it - it then decodes nothing, silently.
        path = os.path.join(tmp, "input" + _safe_suffix(filename))
        with open(path, "wb") as f:
            f.write(data)
        args = ["-i", path, "-map", "0:a:0", "-t", f"{MAX_DECODE_S:g}", "-ac", "1"]
        args += ["-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "s16le", "pipe:1"]
        try:
            pcm = run_ffmpeg(args)
        except FfmpegError as exc:
            # A missing binary or a timeout is ours to fix, not the user's: let it through.
            if exc.returncode is None:
                raise
            if "matches no streams" in exc.stderr:
                raise VoiceError(f"{filename} has no audio track") from None
            raise VoiceError(f"{filename} is not an audio file ffmpeg can decode") from None
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64) / 32768
    if samples.size == 0:
        raise VoiceError(f"{filename} contains no audio samples")
    return samples


def _safe_suffix(filename: str) -> str:
    # Only a hint for ffmpeg's probing; the name never reaches a shell or leaves tmp.
    suffix = os.path.splitext(filename)[1].lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".bin"


def _trim(samples: FloatArray, active: analysis.BoolArray, grid: FrameGrid) -> FloatArray:
    start, end = analysis.speech_bounds(active, grid, len(samples))
    if end <= start:
        return samples[:0]
    pad = round(TRIM_PAD_S * SAMPLE_RATE)
    return samples[max(0, start - pad) : min(len(samples), end + pad)]


def _check_length(speech_s: float, duration_s: float) -> None:
    if speech_s < MIN_SPEECH_S:
        raise VoiceError(
            f"the voice clip has {speech_s:.1f} s of speech; at least {MIN_SPEECH_S:g} s is needed"
        )
    if duration_s >= MAX_DECODE_S:
        raise VoiceError(
            f"the voice clip is longer than {MAX_DECODE_S:g} s; "
            f"upload {MIN_SPEECH_S:g}-{MAX_SPEECH_S:g} s of speech"
        )
    if speech_s > MAX_SPEECH_S:
        raise VoiceError(
            f"the voice clip has {speech_s:.1f} s of speech; at most {MAX_SPEECH_S:g} s "
            "can be used, please trim it"
        )


def _normalisation_gain_db(speech: FloatArray, grid: FrameGrid, threshold_db: float) -> float:
    levels = analysis.levels_db(grid.frames(speech))
    speech_db = analysis.power_mean_db(levels[levels > threshold_db])
    peak = float(np.max(np.abs(speech)))
    peak_db = 20 * np.log10(max(peak, 1e-9))
    return float(min(TARGET_SPEECH_DBFS - speech_db, PEAK_CEILING_DBFS - peak_db))


def _measure(
    speech: FloatArray,
    grid: FrameGrid,
    *,
    threshold_db: float,
    duration_s: float,
    gain_db: float,
    transcript: str | None,
) -> VoiceProfile:
    frames = grid.frames(speech)
    levels = analysis.levels_db(frames)
    active = levels > threshold_db
    f0, _ = analysis.yin_pitch(frames, grid)
    # A periodic frame in the silence between words is hum or noise, not the voice.
    voiced = active & np.isfinite(f0)
    if voiced.sum() * analysis.HOP_S < MIN_VOICED_S:
        raise VoiceError(
            "no voiced speech was found in the voice clip; record yourself speaking normally"
        )
    pitch = f0[voiced]
    q1, median, q3 = np.percentile(pitch, [25, 50, 75])
    speech_s = len(speech) / SAMPLE_RATE
    nuclei = analysis.syllable_nuclei(levels, voiced, threshold_db)
    return VoiceProfile(
        duration_s=round(duration_s, 3),
        speech_s=round(speech_s, 3),
        sample_rate=SAMPLE_RATE,
        median_pitch_hz=round(float(median), 1),
        pitch_iqr_hz=round(float(q3 - q1), 1),
        syllables_per_s=round(len(nuclei) / speech_s, 2),
        words_per_min=_words_per_min(transcript, speech_s),
        loudness_dbfs=round(analysis.power_mean_db(levels[active]), 1),
        gain_db=round(gain_db, 1),
        transcript=transcript,
    )


def _words_per_min(transcript: str | None, speech_s: float) -> float | None:
    if transcript is None:
        return None
    # Punctuation-only tokens ("-", "...") are not words.
    words = [w for w in transcript.split() if any(c.isalnum() for c in w)]
    return round(len(words) * 60 / speech_s, 1) if words else None


def encode_wav(samples: FloatArray, sample_rate: int) -> bytes:
    """Float samples in [-1, 1] -> a 16-bit mono PCM WAV file."""
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


# --- espeak-ng -------------------------------------------------------------------------

ESPEAK_DEFAULT_PITCH = 50
ESPEAK_DEFAULT_SPEED = 175
ESPEAK_MIN_SPEED = 80
ESPEAK_MAX_SPEED = 450


class EspeakParams(TypedDict):
    pitch: int  # espeak-ng -p, 0-99
    speed: int  # espeak-ng -s, words per minute


def espeak_params(profile: VoiceProfile) -> EspeakParams:
    """espeak-ng settings that imitate the measured voice (see the mapping notes below)."""
    return {
        "pitch": espeak_pitch(profile.median_pitch_hz),
        "speed": espeak_speed(profile.words_per_min, profile.syllables_per_s),
    }


def espeak_args(profile: VoiceProfile) -> list[str]:
    """The same, as espeak-ng command-line arguments."""
    params = espeak_params(profile)
    return ["-p", str(params["pitch"]), "-s", str(params["speed"])]


# espeak-ng scales its voice's *base* pitch by pitch_adjust_tab[p] / 128, a table of
# 128 * 2 ** ((p - 50) / 50) (one octave per 50 steps); the intonation range on top of the
# base is not scaled. So the spoken median is F0(p) = BASE * 2 ** ((p - 50) / 50) + RANGE.
# Measured with this module on espeak-ng 1.52's default English voice (reading ~11 s of
# text): p=0 -> 66.8 Hz, 20 -> 77.4, 50 -> 102.1, 80 -> 137.6, 99 -> 169.8, which the
# model fits within 1 Hz at BASE = 70.6, RANGE = 31.5. espeak_pitch inverts it; voices
# outside ~67-170 Hz (most women's and children's) clamp to 0 or 99 on this voice.
ESPEAK_BASE_HZ = 70.6
ESPEAK_RANGE_HZ = 31.5
ESPEAK_STEPS_PER_OCTAVE = 50.0


def espeak_pitch(median_pitch_hz: float) -> int:
    """Median F0 in Hz -> espeak-ng -p (0-99); monotonic, 50 at ~102 Hz."""
    if not median_pitch_hz > 0:
        return ESPEAK_DEFAULT_PITCH
    base_ratio = (median_pitch_hz - ESPEAK_RANGE_HZ) / ESPEAK_BASE_HZ
    if base_ratio <= 0:
        return 0
    p = ESPEAK_DEFAULT_PITCH + ESPEAK_STEPS_PER_OCTAVE * float(np.log2(base_ratio))
    return int(np.clip(round(p), 0, 99))


# espeak-ng's -s is nominal: measured the way this module measures people (words over the
# trimmed speech), its default English voice speaks 1.145 times faster than -s says
# (-s 80 -> 95 wpm, 175 -> 200, 350 -> 397). At -s 175 the nucleus detector counts
# 4.7-4.9 syllables/s (the text has 53 syllables in 11.1 s, so it finds nearly all), which
# calibrates the rate when there is no transcript to count words in. Past ~250 wpm
# syllables merge and the count saturates: a transcript gives the better rate.
ESPEAK_WPM_PER_SPEED = 1.145
ESPEAK_SYLLABLES_PER_S_AT_175 = 4.8


def espeak_speed(words_per_min: float | None, syllables_per_s: float) -> int:
    """Speaking rate -> espeak-ng -s (words per minute, 80-450), monotonic in each input."""
    if words_per_min is not None and words_per_min > 0:
        speed = words_per_min / ESPEAK_WPM_PER_SPEED
    elif syllables_per_s > 0:
        speed = ESPEAK_DEFAULT_SPEED * syllables_per_s / ESPEAK_SYLLABLES_PER_S_AT_175
    else:
        speed = ESPEAK_DEFAULT_SPEED
    return int(np.clip(round(speed), ESPEAK_MIN_SPEED, ESPEAK_MAX_SPEED))
