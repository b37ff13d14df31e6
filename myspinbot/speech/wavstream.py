"""Reading the WAV a program writes to a pipe, whose header cannot state the real length."""

from __future__ import annotations

import struct

import numpy as np

from myspinbot.voice.analysis import FloatArray

_PCM = 1


def read_pcm16_wav(data: bytes) -> tuple[FloatArray, int]:
    """A 16-bit PCM mono WAV -> (samples in [-1, 1], sample rate).

    A writer on a pipe cannot seek back to fill in the sizes once it knows them, so it
    writes a placeholder (espeak-ng: 0x7ffff000); the data chunk is therefore read to the
    end of what arrived whenever its declared size runs past it.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE stream")
    pos = 12
    rate: int | None = None
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        body = pos + 8
        if chunk_id == b"fmt ":
            fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[body : body + 16])
            if (fmt, channels, bits) != (_PCM, 1, 16):
                raise ValueError(
                    f"expected 16-bit PCM mono, got format {fmt}, {channels} channels, {bits} bits"
                )
        elif chunk_id == b"data":
            if rate is None:
                raise ValueError("WAV data chunk comes before its fmt chunk")
            pcm = data[body : min(body + size, len(data))]
            pcm = pcm[: len(pcm) // 2 * 2]
            samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768
            return samples, rate
        # Chunks are padded to an even length.
        pos = body + size + (size & 1)
    raise ValueError("WAV stream has no data chunk")
