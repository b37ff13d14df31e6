"""From a phoneme timeline to a mouth pose per video frame, the way Rhubarb Lip Sync does.

Each ARPAbet phoneme has a target mouth shape (a viseme): lips pressed for P B M, lower
lip to the upper teeth for F V, rounded for UW OW W, spread for IY EH, open for AA AE
AH, Rhubarb's idle mouth (lips together, relaxed) in silence. Real mouths do not jump
between targets (co-articulation), so the pose at a moment is a blend of the nearby
targets, each
weighted by its *dominance*: 1 inside its phoneme's span, falling off exponentially
outside. Phonemes whose shape is visible and obligatory (the lip closure of a p, the
tuck of an f) dominate strongly, so they are reached even when short; weak consonants
(t, k, h) barely have a shape of their own and take their neighbours'. Three timing
details:

- a bilabial's closure starts a little before its aligned start (the lips shut before
  the plosive's release, which is what the aligner marks the phone by);
- a diphthong moves from its first shape to its second across its span (AY: AA -> IY);
- the blend is smooth in time, so transitions ease in and out instead of snapping.

The loudness of the speech scales how wide a vowel opens: a stressed, loud "ah" opens
more than a mumbled one. With no phonemes at all the opening follows loudness alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Viseme:
    """A mouth target. `open`: lip gap, 0 (lips together) to 1 (a wide "ah"); `width`:
    -1 (rounded, corners in) to 1 (spread, corners out); `tuck`: 0..1, the lower lip
    raised to the upper teeth (f, v); `rest`: 1 for the portrait's own mouth."""

    open: float
    width: float = 0.0
    tuck: float = 0.0
    rest: float = 0.0


REST = Viseme(0.0, rest=1.0)
CLOSED = Viseme(0.0)
# Rhubarb's X, the idle mouth of pauses and silence: lips together, relaxed (a separate
# object from CLOSED, so it does not get a closure's dominance). On a photo that smiles
# with teeth showing, the lips close over them, as a person's do between sentences.
IDLE = Viseme(0.0)
# Targets per phoneme (Rhubarb's shapes: A = closed, B = clenched/slightly open, C = open,
# D = wide open, E = slightly rounded, F = puckered, G = f/v, H = l, X = rest).
SHAPES: dict[str, Viseme] = {
    # A: lips pressed
    "P": CLOSED, "B": CLOSED, "M": CLOSED,
    # G: lower lip to upper teeth
    "F": Viseme(0.08, 0.1, tuck=1.0), "V": Viseme(0.08, 0.1, tuck=1.0),
    # F: puckered
    "UW": Viseme(0.25, -1.0), "W": Viseme(0.15, -1.0), "UH": Viseme(0.3, -0.6),
    # E: rounded
    "OW": Viseme(0.5, -0.6), "AO": Viseme(0.65, -0.4), "ER": Viseme(0.3, -0.4),
    "R": Viseme(0.25, -0.5), "SH": Viseme(0.2, -0.5), "ZH": Viseme(0.2, -0.5),
    "CH": Viseme(0.2, -0.5), "JH": Viseme(0.2, -0.5),
    # B / C: spread, slightly to half open
    "IY": Viseme(0.22, 1.0), "IH": Viseme(0.35, 0.6), "EH": Viseme(0.5, 0.7),
    "EY": Viseme(0.45, 0.7), "Y": Viseme(0.2, 0.8), "AE": Viseme(0.8, 0.5),
    # D: open
    "AA": Viseme(1.0, 0.0), "AH": Viseme(0.7, 0.0),
    # H: tongue up, mouth half open
    "L": Viseme(0.35, 0.1),
    # B: teeth nearly together
    "S": Viseme(0.12, 0.4), "Z": Viseme(0.12, 0.4), "T": Viseme(0.2, 0.2),
    "D": Viseme(0.2, 0.2), "N": Viseme(0.2, 0.2), "TH": Viseme(0.2, 0.2),
    "DH": Viseme(0.2, 0.2), "K": Viseme(0.3, 0.1), "G": Viseme(0.3, 0.1),
    "NG": Viseme(0.3, 0.1), "HH": Viseme(0.4, 0.0),
    "SIL": IDLE,
}  # fmt: skip
# Diphthongs: (first shape, second shape).
DIPHTHONGS = {
    "AY": ("AA", "IY"), "AW": ("AA", "UW"), "OY": ("AO", "IY"),
    "EY": ("EH", "IY"), "OW": ("AO", "UW"),
}  # fmt: skip
VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}

# Dominance of a phoneme's shape over its neighbours': (inside its span, at its edge,
# falloff in seconds per e-fold outside). Lip closures and the f/v tuck must be seen, so
# they rule their own span, but fall off fast outside it, or a "p" would pinch the vowels
# around it; lip rounding is anticipated early (people round for "oo" well before it);
# weak consonants barely have a shape of their own and take their neighbours'.
DOMINANCE_CLOSED = (80.0, 2.0, 0.025)
DOMINANCE_TUCK = (12.0, 1.5, 0.03)
DOMINANCE_VOWEL = (2.0, 2.0, 0.045)
DOMINANCE_ROUND = (3.0, 3.0, 0.06)
DOMINANCE_WEAK = (0.6, 0.6, 0.04)
DOMINANCE_SILENCE = (1.5, 1.5, 0.05)
# The lips close this long before a bilabial's aligned start (anticipation).
CLOSURE_LEAD_S = 0.03
# A pause shorter than this is no pause for the mouth: the neighbours' shapes carry over.
MIN_REST_S = 0.15
# Vowel opening = shape x (ENERGY_FLOOR + (1 - ENERGY_FLOOR) x loudness).
ENERGY_FLOOR = 0.35
# Sub-samples per video frame: a frame shows the mean pose over its span, so a 50 ms
# closure between two frame centres is still seen.
SUBSAMPLES = 4
# A speaking pose with less opening than this is a lip closure.
PRESSED = 0.05


@dataclass(frozen=True)
class Poses:
    """Mouth pose per video frame: arrays of the Viseme fields."""

    open: FloatArray
    width: FloatArray
    tuck: FloatArray
    rest: FloatArray

    def __len__(self) -> int:
        return len(self.open)


@dataclass(frozen=True)
class _Target:
    start: float
    end: float
    shape: Viseme
    dominance: tuple[float, float, float]
    vowel: bool


def _dominance(phone: str, shape: Viseme) -> tuple[float, float, float]:
    if phone == "SIL":
        return DOMINANCE_SILENCE
    if shape is CLOSED:
        return DOMINANCE_CLOSED
    if shape.tuck > 0:
        return DOMINANCE_TUCK
    if phone in VOWELS:
        return DOMINANCE_ROUND if shape.width < -0.3 else DOMINANCE_VOWEL
    if shape.width <= -0.5:
        return DOMINANCE_ROUND
    return DOMINANCE_WEAK


def targets(phonemes: Sequence[Any]) -> list[_Target]:
    """Shape targets over time from phoneme timings (objects with .phone, .start_s,
    .end_s); unknown phones are treated as weak consonants."""
    out: list[_Target] = []
    for p in phonemes:
        phone = str(p.phone).upper().rstrip("012")
        start, end = float(p.start_s), float(p.end_s)
        if end <= start:
            continue
        if phone == "SIL" and end - start < MIN_REST_S:
            continue  # a breath between words: the neighbours' shapes carry over
        if phone in DIPHTHONGS:
            first, second = DIPHTHONGS[phone]
            mid = start + 0.45 * (end - start)
            for a, b, name in ((start, mid, first), (mid, end, second)):
                shape = SHAPES[name]
                out.append(_Target(a, b, shape, _dominance(name, shape), True))
            continue
        shape = SHAPES.get(phone, Viseme(0.25, 0.1))
        if shape is CLOSED:
            start -= CLOSURE_LEAD_S
        out.append(_Target(start, end, shape, _dominance(phone, shape), phone in VOWELS))
    return out


def poses_from_phonemes(
    phonemes: Sequence[Any], loudness: FloatArray, fps: int, frames: int
) -> Poses:
    """The mouth pose of each frame. `loudness` is per frame, 0..1 (the energy envelope),
    and scales vowel openings."""
    times = (np.arange(frames * SUBSAMPLES, dtype=np.float64) + 0.5) / (fps * SUBSAMPLES)
    found = targets(phonemes)
    fields = np.zeros((4, len(times)))
    if not found:  # nothing spoken: the idle mouth throughout
        return _per_frame(fields, frames)
    total = np.zeros(len(times))
    for t in found:
        # 0 inside the span, distance to it outside.
        distance = np.maximum(t.start - times, 0.0) + np.maximum(times - t.end, 0.0)
        inside, edge, falloff = t.dominance
        weight = np.where(distance > 0, edge * np.exp(-distance / falloff), inside)
        # Loudness scales every opening: a stressed, loud syllable opens wider.
        frame = np.minimum((times * fps).astype(np.int64), frames - 1)
        opening = t.shape.open * (ENERGY_FLOOR + (1.0 - ENERGY_FLOOR) * loudness[frame])
        fields[0] += weight * opening
        fields[1] += weight * t.shape.width
        fields[2] += weight * t.shape.tuck
        fields[3] += weight * t.shape.rest
        total += weight
    # Before the first and after the last phoneme: the idle mouth (all fields 0).
    _, edge, falloff = DOMINANCE_SILENCE
    idle_weight = edge * np.exp(-_outside(times, found) / falloff)
    idle_weight[_within(times, found)] = 0.0
    total += idle_weight
    fields /= np.maximum(total, 1e-9)
    return _per_frame(fields, frames)


def poses_from_loudness(openings: FloatArray) -> Poses:
    """No phonemes: the mouth opens with loudness; in silence, the idle mouth."""
    opening = np.asarray(openings, dtype=np.float32)
    zeros = np.zeros_like(opening)
    return Poses(open=opening * 0.8, width=zeros, tuck=zeros.copy(), rest=zeros.copy())


def _outside(times: npt.NDArray[np.float64], found: list[_Target]) -> npt.NDArray[np.float64]:
    first, last = min(t.start for t in found), max(t.end for t in found)
    return np.asarray(np.maximum(first - times, 0.0) + np.maximum(times - last, 0.0))


def _within(times: npt.NDArray[np.float64], found: list[_Target]) -> npt.NDArray[np.bool_]:
    first, last = min(t.start for t in found), max(t.end for t in found)
    return (times >= first) & (times <= last)


def _per_frame(fields: npt.NDArray[np.float64], frames: int) -> Poses:
    per = fields.reshape(4, frames, SUBSAMPLES)
    # A frame shows the mean pose over its span, except that a lip closure anywhere in
    # it is shown: a closure is a brief event a viewer must see (and a p without one
    # reads as wrong at once), so the frame takes the most closed speaking moment.
    pressed = (per[0] < PRESSED) & (per[3] < 0.3)
    mean = per.mean(axis=2)
    masked = np.where(pressed, per[0], np.inf)
    pick = np.argmin(masked, axis=1)
    rows = np.arange(frames)
    chosen = per[:, rows, pick]
    any_pressed = pressed.any(axis=1)
    out = np.where(any_pressed[None, :], chosen, mean).astype(np.float32)
    return Poses(open=out[0], width=out[1], tuck=out[2], rest=out[3])
