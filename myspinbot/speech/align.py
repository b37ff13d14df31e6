"""Forced alignment: where each word and phoneme of a known transcript falls in audio.

pocketsphinx (BSD) ships CMU's US-English acoustic model and pronouncing dictionary in
its wheel, so this runs offline on any engine's output or on a person's own recording.
Two passes, as pocketsphinx documents for sub-word alignment: the transcript as a linear
grammar gives word boundaries, then a state-level pass inside those boundaries gives the
phones. That second pass can fail to reach the final state in pocketsphinx 5.1 (fixed
upstream after the last release); then each word's dictionary phones are spread over
the word's aligned span instead, which keeps the word timing exact and the phone order
right, and is still far closer than loudness alone.

Words the dictionary does not know cannot be aligned; they are left out of the grammar
(their sound is absorbed by the neighbours or by silence) and reported in `skipped`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from myspinbot.speech.audio import resample
from myspinbot.speech.models import PhonemeTiming, WordTiming

ALIGN_RATE = 16_000  # the acoustic model's sample rate
FRAMES_PER_S = 100  # pocketsphinx's feature frame rate
# Beams: equal word and state beams, far wider than the recogniser's defaults, and no cap
# on active HMMs. Synthetic voices (espeak's formant voice above all) sit far from the
# acoustic model's training speakers; with the stock (unequal) beams the search prunes
# the right path and reports no alignment (pocketsphinx #464). A linear grammar keeps
# the search small even so.
BEAM = 1e-200
# Silence padded around the audio: the grammar starts and ends in silence, and TTS
# output trimmed to the first sample otherwise starts mid-phone.
PAD_S = 0.2
# Noise and filler phones in the model's inventory are pauses to a mouth.
NON_SPEECH = re.compile(r"^(SIL|\+.*\+|<.*>)$")
# Relative length of a phone when spreading a word's phones over its span: vowels
# carry a syllable's length, consonants are shorter.
VOWELS = {
    "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",
}  # fmt: skip
# Audio quieter than this overall (about -55 dBFS) holds no speech to align.
SILENT_RMS = 0.002
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class AlignmentFailed(Exception):
    """The audio could not be aligned to the transcript (the words are not what is said,
    or the voice is too far from the acoustic model)."""


@dataclass(frozen=True)
class Alignment:
    phonemes: list[PhonemeTiming]
    words: list[WordTiming]
    skipped: list[str] = field(default_factory=list)  # words not in the dictionary
    phone_pass: bool = True  # False: phones spread over word spans (second pass failed)


def transcript_words(text: str) -> list[str]:
    """The transcript as lower-case dictionary words; digits are read one by one."""
    words: list[str] = []
    for token in re.findall(r"[A-Za-z]+(?:'[A-Za-z]+)*|\d", text):
        words.append(DIGITS[int(token)] if token.isdigit() else token.lower())
    return words


def align(samples: npt.NDArray[np.float32], sample_rate: int, transcript: str) -> Alignment:
    """Phoneme and word timings of `transcript` spoken in `samples` (mono, [-1, 1])."""
    from pocketsphinx import Decoder

    decoder = Decoder(
        lm=None,
        loglevel="FATAL",
        bestpath=False,
        beam=BEAM,
        wbeam=BEAM,
        pbeam=BEAM,
        maxhmmpf=-1,
        maxwpf=-1,
    )
    known: list[str] = []
    skipped: list[str] = []
    for word in transcript_words(transcript):
        (known if decoder.lookup_word(word) is not None else skipped).append(word)
    if not known:
        raise AlignmentFailed("none of the narration's words is in the dictionary")
    level = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    if level < SILENT_RMS:
        # The search would happily spread the words over silence.
        raise AlignmentFailed("the audio is silent")
    pad = round(PAD_S * ALIGN_RATE)
    audio = resample(np.asarray(samples, dtype=np.float64), sample_rate, ALIGN_RATE)
    audio = np.concatenate([np.zeros(pad), audio, np.zeros(pad)])
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2").tobytes()
    offset = PAD_S
    duration = len(samples) / sample_rate

    try:
        decoder.set_align_text(" ".join(known))
        _decode(decoder, pcm)
        if decoder.hyp() is None:  # the grammar's end was not reached
            raise RuntimeError("the search did not reach the end of the transcript")
        segments = [(s.word, s.start_frame, s.end_frame) for s in decoder.seg()]
    except RuntimeError as exc:
        raise AlignmentFailed(f"the speech does not match the words ({exc})") from None
    words = [
        WordTiming(_word(name), *_span(start, end + 1, offset, duration))
        for name, start, end in segments
        if not NON_SPEECH.match(name)
    ]
    if not words:
        raise AlignmentFailed("no word could be placed in the audio")
    try:
        decoder.set_alignment()
        _decode(decoder, pcm)
        alignment = decoder.get_alignment()
        if alignment is None:
            raise RuntimeError("no sub-word alignment")
        phones = [
            PhonemeTiming(_phone(p.name), *_span(p.start, p.start + p.duration, offset, duration))
            for p in alignment.phones()
        ]
        phone_pass = True
    except RuntimeError:
        phones = _spread(decoder, segments, offset, duration)
        phone_pass = False
    phones = [p for p in _merge(phones) if p.end_s > p.start_s]
    return Alignment(phonemes=phones, words=words, skipped=skipped, phone_pass=phone_pass)


def _decode(decoder: object, pcm: bytes) -> None:
    decoder.start_utt()  # type: ignore[attr-defined]
    decoder.process_raw(pcm, full_utt=True)  # type: ignore[attr-defined]
    decoder.end_utt()  # type: ignore[attr-defined]


def _span(start: int, end: int, offset: float, duration: float) -> tuple[float, float]:
    """Frames of the padded audio -> seconds of the original, clipped to it."""
    a = min(round(max(start / FRAMES_PER_S - offset, 0.0), 3), duration)
    b = min(round(max(end / FRAMES_PER_S - offset, 0.0), 3), duration)
    return a, b


def _word(name: str) -> str:
    return re.sub(r"\(\d+\)$", "", name)  # "the(2)" is the dictionary's second variant


def _phone(name: str) -> str:
    return "SIL" if NON_SPEECH.match(name) else re.sub(r"\d", "", name).upper()


def _spread(
    decoder: object, segments: list[tuple[str, int, int]], offset: float, duration: float
) -> list[PhonemeTiming]:
    """Each word's dictionary phones over its aligned span, vowels weighted double."""
    phones: list[PhonemeTiming] = []
    for name, start, end in segments:
        a, b = _span(start, end + 1, offset, duration)
        pron = None if NON_SPEECH.match(name) else decoder.lookup_word(name)  # type: ignore[attr-defined]
        if not pron:
            phones.append(PhonemeTiming("SIL", a, b))
            continue
        names = [_phone(p) for p in pron.split()]
        weights = np.array([2.0 if p in VOWELS else 1.0 for p in names])
        edges = a + (b - a) * np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum()
        phones.extend(
            PhonemeTiming(p, round(float(s), 3), round(float(e), 3))
            for p, s, e in zip(names, edges[:-1], edges[1:], strict=True)
        )
    return phones


def _merge(phones: list[PhonemeTiming]) -> list[PhonemeTiming]:
    """Consecutive pauses as one."""
    out: list[PhonemeTiming] = []
    for p in phones:
        if out and p.phone == "SIL" and out[-1].phone == "SIL":
            out[-1] = PhonemeTiming("SIL", out[-1].start_s, p.end_s)
        else:
            out.append(p)
    return out
