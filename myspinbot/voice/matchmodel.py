"""What a profile keeps of its voice match: the base voice, and how to convert it toward
the person. Plain data (stored in the profile's metadata and as voice/match.json)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class VoiceConversion(BaseModel):
    """A per-profile spectral and pitch mapping from one base voice to the person.

    The envelope map is an affine ridge regression on WORLD's coded spectral envelope
    (dimensions 1.., energy excluded), learnt from the base voice and the person saying
    the same words, aligned by DTW. `strength` moves only part of the way (full
    conversion costs intelligibility); `gv_weight` restores part of the frame-to-frame
    variance that regression smooths away (global variance, Toda et al. 2007).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_rate: int
    dims: int
    source_mean: list[float]  # base voice, per coded dimension 1..dims-1
    target_mean: list[float]  # the person, same dimensions
    target_std: list[float]
    matrix: list[list[float]]  # (dims-1) x (dims-1): centred source -> centred target
    strength: float
    gv_weight: float
    # The clip's audio bandwidth: above it (a phone or radio recording has nothing past
    # 3.4-4 kHz) the base voice's envelope is kept, or fricatives would be erased.
    bandwidth_hz: float
    # log-F0 statistics over voiced frames: the base voice's and the person's.
    source_lf0_mean: float
    source_lf0_std: float
    target_lf0_mean: float
    target_lf0_std: float
    # Set when only pitch is converted (the envelope map could not be learnt).
    note: str | None = None


class VoiceMatch(BaseModel):
    """The base voice nearest the person, and the result of converting it toward them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    engine: str  # the speech engine whose voice is the base ("flite")
    base_voice: str
    stretch: float  # the engine's duration stretch that matches the person's pace
    # Speaker-embedding similarity of each candidate base voice to the person's clip.
    candidates: dict[str, float]
    # On a sentence not used for training: similarity of the produced (converted) speech
    # to the person's clip, and of the unconverted base voice beside it.
    score: float
    base_score: float
    conversion: VoiceConversion | None
    # The recogniser's word error rate on the held-out sentence, converted and not.
    wer: float
    base_wer: float
    # Why there is no conversion (the clip and its transcript could not be aligned).
    note: str | None = None
    # The person's clip as the speaker encoder hears it, so each generated narration can
    # be scored without fetching the clip again.
    clip_embedding: list[float]


class NarrationMatch(BaseModel):
    """How one generated narration sounds against the person's clip (generate result)."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    engine: str
    base_voice: str
    converted: bool
    score: float  # speaker-embedding similarity of the produced speech to the clip
    base_score: float  # the same for the base voice saying the narration unconverted
