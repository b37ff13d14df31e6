"""From a person's uploaded photos to a face-centred, captioned training set.

Each photo is decoded defensively, turned upright, searched for a face, and cropped to a
square around the face (with hair and shoulders) at the training resolution. Photos that
cannot be used are reported by name with a reason the person can act on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from PIL import Image

from myspinbot.errors import PermanentError
from myspinbot.imaging.decode import Unusable, decode_image
from myspinbot.imaging.faces import MIN_FACE_PX, Box, crop_around, find_faces
from myspinbot.imaging.portrait import Master, cut_master


class DatasetError(PermanentError):
    """Too few of the uploaded photos can be used; the message says which and why."""


@dataclass(frozen=True, eq=False)
class PreparedImage:
    name: str
    image: Image.Image  # RGB, resolution x resolution
    caption: str
    face_box: Box  # in the upright original (after its EXIF orientation is applied)
    crop_box: Box  # the square that was cut out and resized, same coordinates
    face_size: int  # the face box's side in original pixels
    faces: int  # faces detected; more than one means the largest was taken
    score: float  # suitability as a portrait, 0-1: see _portrait_score
    master: Master  # the same square at the photo's own resolution: the video's portrait


@dataclass
class PreparedDataset:
    images: list[PreparedImage] = field(default_factory=list)
    unusable: dict[str, str] = field(default_factory=dict)  # file name -> reason

    def best_portrait(self) -> PreparedImage:
        """The photo best used as a portrait: a central face with enough pixels."""
        if not self.images:
            raise DatasetError("no usable photo to take a portrait from")
        return max(self.images, key=lambda im: (im.score, im.face_size))


def prepare_dataset(
    files: Sequence[tuple[str, bytes]],
    *,
    resolution: int,
    trigger_token: str,
    captions: Mapping[str, str] | None = None,
    min_images: int = 1,
) -> PreparedDataset:
    """Decode, find the face in, crop and caption each photo.

    Raises DatasetError when fewer than `min_images` photos are usable.
    """
    if resolution < 8:
        raise ValueError(f"resolution must be at least 8 pixels, not {resolution}")
    if not trigger_token or any(c.isspace() for c in trigger_token):
        raise ValueError(f"trigger_token must be a single word, not {trigger_token!r}")
    dataset = PreparedDataset()
    for name, original_name, data in _unique_names(files):
        caption = caption_for(original_name, trigger_token, captions)
        try:
            image = prepare_image(name, data, resolution=resolution, caption=caption)
        except Unusable as exc:
            dataset.unusable[name] = str(exc)
        else:
            dataset.images.append(image)
    if len(dataset.images) < min_images:
        raise DatasetError(_explain(dataset, total=len(files), min_images=min_images))
    return dataset


def prepare_image(name: str, data: bytes, *, resolution: int, caption: str) -> PreparedImage:
    """One photo -> a face-centred square. Raises Unusable with the reason."""
    image = decode_image(data)
    faces = find_faces(image)
    if not faces:
        raise Unusable("no face found")
    face = max(faces, key=lambda b: b.width * b.height)
    min_face = max(MIN_FACE_PX, resolution // 10)
    if face.width < min_face:
        raise Unusable(f"the face is only {face.width} px wide; use a closer or larger photo")
    crop = crop_around(face, image.width, image.height)
    square = image.resize(
        (resolution, resolution),
        Image.Resampling.LANCZOS,
        box=(crop.x, crop.y, crop.x + crop.width, crop.y + crop.height),
        # Shrinks by whole factors first (cheap box filter), then LANCZOS for the rest:
        # much faster on 12 MP photos and indistinguishable at the output size.
        reducing_gap=3.0,
    )
    return PreparedImage(
        name=name,
        image=square,
        caption=caption,
        face_box=face,
        crop_box=crop,
        face_size=face.width,
        faces=len(faces),
        score=_portrait_score(face, crop, image.size, resolution),
        master=cut_master(image, face),
    )


def caption_for(name: str, trigger_token: str, captions: Mapping[str, str] | None) -> str:
    """The user's caption for `name` if given, else `a photo of <token> person`.

    A user caption without the trigger token gets the default prefixed: without the
    token in every caption, training cannot tie the identity to it.
    """
    default = f"a photo of {trigger_token} person"
    user = (captions or {}).get(name, "").strip()
    if not user:
        return default
    if trigger_token in user.split():
        return user
    return f"{default}, {user}"


def _portrait_score(face: Box, crop: Box, size: tuple[int, int], resolution: int) -> float:
    """How well the photo serves as a portrait: 0-1, higher is better.

    The product of coverage - whether the crop has at least the output's pixels (less
    means upscaling, hence blur) - and centrality - how near the face is to the middle of
    the photo (1 at the centre, 0 in a corner).
    """
    coverage = min(1.0, crop.width / resolution)
    width, height = size
    cx, cy = face.center
    offset = math.hypot((cx - width / 2) / width, (cy - height / 2) / height)
    centrality = max(0.0, 1.0 - offset / math.hypot(0.5, 0.5))
    return round(coverage * centrality, 4)


def _unique_names(files: Sequence[tuple[str, bytes]]) -> list[tuple[str, str, bytes]]:
    """(unique name, name as uploaded, data): two uploads may share a name ("image.jpg"
    from two phones), yet each needs its own entry in `unusable` and in messages."""
    seen: dict[str, int] = {}
    out = []
    for name, data in files:
        seen[name] = seen.get(name, 0) + 1
        unique = name if seen[name] == 1 else f"{name} ({seen[name]})"
        out.append((unique, name, data))
    return out


def _explain(dataset: PreparedDataset, *, total: int, min_images: int) -> str:
    reasons = "; ".join(f"{name}: {reason}" for name, reason in dataset.unusable.items())
    usable = len(dataset.images)
    if total == 0:
        return "no photos were uploaded"
    photos = "photo" if min_images == 1 else "photos"
    if usable == 0:
        head = f"none of the {total} uploaded photos can be used"
    else:
        head = f"only {usable} of the {total} uploaded photos can be used"
    return f"{head} (at least {min_images} {photos} with a clear face needed): {reasons}"


# Box and Unusable appear in this module's results and errors; they live in imaging/.
__all__ = [
    "Box",
    "DatasetError",
    "PreparedDataset",
    "PreparedImage",
    "Unusable",
    "caption_for",
    "prepare_dataset",
    "prepare_image",
]
