"""Checking uploaded files before anything is stored.

Uploads arrive spooled by the multipart parser (in memory up to 1 MB, then on disk) and
are checked and stored from there in chunks: an upload is never read whole into memory,
except a portrait, which must be decoded to find its face anyway.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from typing import BinaryIO

import anyio.to_thread
from PIL import Image
from starlette.datastructures import UploadFile

from gateway.errors import ApiError
from myspinbot.settings import Settings

IMAGE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}

# Images past this many pixels are refused outright: decoding one is how a
# "decompression bomb" exhausts memory (50 MP is far beyond any useful photo).
MAX_IMAGE_PIXELS = 50_000_000

# Leading bytes of the audio containers the voice step can decode.
AUDIO_SIGNATURES: list[tuple[str, re.Pattern[bytes]]] = [
    ("audio/wav", re.compile(rb"^RIFF....WAVE", re.S)),
    ("audio/mpeg", re.compile(rb"^(ID3|\xff[\xe0-\xff])", re.S)),
    ("audio/ogg", re.compile(rb"^OggS")),
    ("audio/flac", re.compile(rb"^fLaC")),
    ("audio/mp4", re.compile(rb"^....ftyp(M4A |mp4|isom|M4B )", re.S)),
    ("audio/webm", re.compile(rb"^\x1a\x45\xdf\xa3")),
]


def mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def safe_name(name: str | None, default: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", (name or "").rsplit("/", 1)[-1]).strip("._")
    return cleaned[:80] or default


@dataclass(frozen=True)
class Staged:
    """An uploaded file, checked, still in the parser's spool: stored from there."""

    rel: str  # its name under the job's inputs/
    file: BinaryIO
    content_type: str
    sha256: str


def check_size(upload: UploadFile, limit: int, what: str) -> None:
    """Refuse a file over the per-file limit (the whole request was counted already)."""
    size = upload.size
    if size is None:
        size = upload.file.seek(0, io.SEEK_END)
        upload.file.seek(0)
    if size > limit:
        raise ApiError(
            413,
            f"{what} {upload.filename!r} is larger than the {mb(limit)} limit per file",
            field=what,
        )


def sha256_of(file: BinaryIO) -> str:
    """Digest of a spooled file, read in chunks; the file is left at its start."""
    file.seek(0)
    digest = hashlib.sha256()
    while chunk := file.read(1024 * 1024):
        digest.update(chunk)
    file.seek(0)
    return digest.hexdigest()


async def stage_training(
    images: list[UploadFile], voice: UploadFile | None, limit: int
) -> list[Staged]:
    """The photos and voice clip of a train request, checked; 4xx naming the bad file."""

    def check() -> list[Staged]:
        staged: list[Staged] = []
        for i, upload in enumerate(images):
            check_size(upload, limit, "images")
            content_type = check_image(upload.filename or f"image {i + 1}", upload.file)
            rel = f"images/{i:02d}-{safe_name(upload.filename, 'image')}"
            staged.append(Staged(rel, upload.file, content_type, sha256_of(upload.file)))
        if voice is not None:
            check_size(voice, limit, "voice")
            content_type = check_audio(voice.filename or "voice", voice.file)
            rel = f"voice/{safe_name(voice.filename, 'voice')}"
            staged.append(Staged(rel, voice.file, content_type, sha256_of(voice.file)))
        return staged

    # Reading spooled files may touch the disk: not on the event loop.
    return await anyio.to_thread.run_sync(check)


async def check_narration(name: str, data: bytes | BinaryIO, max_seconds: float) -> float:
    """Seconds of a narration recording that can narrate a video, or a readable 4xx:
    not audio, no audio in it, silent, or longer than the limit."""
    from myspinbot.speech.narration import NarrationRejected, decode_recording

    check_audio(name, data, field="audio")
    try:
        speech = await anyio.to_thread.run_sync(decode_recording, data, repr(name), max_seconds)
    except NarrationRejected as exc:
        raise ApiError(exc.status, str(exc), field="audio") from None
    return speech.duration_s


async def check_voice_clip(
    name: str, file: BinaryIO, transcript: str | None, settings: Settings
) -> None:
    """A readable 4xx for a voice clip training would refuse: not decodable, silent, too
    short or long, or (where the words are needed and not given) no recognisable speech.
    The clip is read whole (within the per-file limit): it must be decoded anyway."""
    from myspinbot.voice.build import screen_voice_clip
    from myspinbot.voice.profile import VoiceError

    def screen() -> None:
        file.seek(0)
        data = file.read()
        file.seek(0)
        screen_voice_clip(data, repr(name), transcript, settings)

    try:
        await anyio.to_thread.run_sync(screen)
    except VoiceError as exc:
        raise ApiError(
            422, f"The voice clip {name!r} was not accepted: {exc}", field="voice"
        ) from None


def check_image(name: str, data: bytes | BinaryIO, field: str = "images") -> str:
    """Return the content type of a real JPEG/PNG/WebP image, or raise a 4xx.
    A file is read from its start, in chunks, and left at its start."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    source.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(source)
            fmt = img.format or ""
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ApiError(
                    413,
                    f"image {name!r} is {width}x{height} pixels; the limit is "
                    f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels",
                    field=field,
                )
            img.verify()
        except ApiError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ApiError(
                413, f"image {name!r} has too many pixels to decode safely", field=field
            ) from None
        except Exception:
            raise ApiError(
                415,
                f"{name!r} is not a readable image (JPEG, PNG or WebP expected)",
                field=field,
            ) from None
        finally:
            source.seek(0)
    if fmt not in IMAGE_FORMATS:
        raise ApiError(
            415, f"{name!r} is a {fmt or 'unknown'} image; use JPEG, PNG or WebP", field=field
        )
    return IMAGE_FORMATS[fmt]


def check_face(name: str, data: bytes, field: str = "image") -> None:
    """Raise a 422 naming the photo when no face can be found in it (a portrait must show
    one: the video is framed on it and its mouth is animated). Blocking: run in a thread."""
    # Imported here: OpenCV loads only when a portrait is uploaded, not with the gateway.
    from myspinbot.imaging.decode import Unusable, decode_image
    from myspinbot.imaging.faces import largest_face

    try:
        face = largest_face(decode_image(data))
    except Unusable as exc:
        raise ApiError(422, f"{name!r} cannot be used: {exc}", field=field) from None
    if face is None:
        raise ApiError(
            422,
            f"No face can be found in {name!r}; use a photo with the face clearly visible, "
            "facing the camera.",
            field=field,
        )


def check_audio(name: str, data: bytes | BinaryIO, field: str = "voice") -> str:
    if isinstance(data, bytes):
        head = data[:16]
    else:
        data.seek(0)
        head = data.read(16)
        data.seek(0)
    for content_type, sig in AUDIO_SIGNATURES:
        if sig.match(head):
            return content_type
    raise ApiError(
        415,
        f"{name!r} is not an audio file we can read (WAV, MP3, OGG, FLAC or M4A expected)",
        field=field,
    )
