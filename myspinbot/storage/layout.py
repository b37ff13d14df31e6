"""Where each kind of object lives in the bucket: one place, so that deleting a job or a
profile (myspinbot/deletion.py) finds everything the pipelines wrote.

- `jobs/<job>/inputs/`, `jobs/<job>/checkpoints/`: a training's uploads and checkpoints;
- `generations/<job>/`: a video and its speech, stage and script;
- `profiles/<profile>/`: LoRA files, photo masters, voice, metadata, portrait;
- `portraits/<id>`, `narrations/<id>`: uploads a generate job names;
- `stage-cache/<sha256 of a photo>-<size>-<upscaler>.png`: upscaled portraits.
"""

from __future__ import annotations


def job_prefix(job_id: str) -> str:
    """Everything of a job under `jobs/`: a training's inputs and checkpoints."""
    return f"jobs/{job_id}/"


def output_prefix(job_id: str) -> str:
    """A generate job's outputs."""
    return f"generations/{job_id}/"


def profile_prefix(profile_id: str) -> str:
    return f"profiles/{profile_id}/"


def portrait_key(portrait_id: str) -> str:
    """Where an uploaded portrait is kept."""
    return f"portraits/{portrait_id}"


def narration_key(narration_id: str) -> str:
    """Where an uploaded narration recording is kept."""
    return f"narrations/{narration_id}"


def portrait_cache_prefix(digest: str) -> str:
    """Every cached upscale of one photo (by content hash), at any size: deleting the photo
    deletes these too."""
    return f"stage-cache/{digest}-"


def portrait_cache_key(digest: str, size: int, upscaler: str) -> str:
    """Where a learned upscale of one photo (by content hash) at one size is kept."""
    return f"{portrait_cache_prefix(digest)}{size}-{upscaler}.png"
