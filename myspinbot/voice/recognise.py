"""Speech to text with CMU PocketSphinx (`pocketsphinx` wheel, BSD; its US English acoustic
model, dictionary and language model ship inside the wheel).

Used where a clip comes without its transcript (voice conversion needs the words), and to
measure how intelligible produced speech is (word error rate).
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

import numpy as np

from myspinbot.errors import PermanentError
from myspinbot.speech import audio
from myspinbot.voice.analysis import FloatArray

RECOGNISER_RATE = 16_000
_lock = threading.Lock()


class RecogniserMissing(PermanentError):
    """pocketsphinx is not installed."""


@lru_cache(maxsize=1)
def _decoder() -> Any:
    try:
        from pocketsphinx import Decoder
    except ImportError:
        raise RecogniserMissing(
            "Transcribing a voice clip needs the Python package `pocketsphinx`."
        ) from None
    return Decoder(samprate=RECOGNISER_RATE, loglevel="FATAL")


def transcribe(samples: FloatArray, sample_rate: int) -> str:
    """The words pocketsphinx hears, lower case, space separated ('' for none)."""
    x = audio.resample(np.asarray(samples, dtype=np.float64), sample_rate, RECOGNISER_RATE)
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes()
    # One decoder, reused: loading the model takes about a second. It is not thread-safe.
    with _lock:
        dec = _decoder()
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()
        hyp = dec.hyp()
    return " ".join(_words(hyp.hypstr)) if hyp is not None else ""


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by edit distance."""
    ref, hyp = _words(reference), _words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)
