"""The generate job as a DAG of steps with progress weights.

script (5%) -> speech (10%) -> stage (25%) -> animate (50%) -> finish (10%)

Frames are animated and streamed into ffmpeg as they come, so memory stays flat for any
length; nothing is uploaded until the video is complete, so a cancelled or failed job
leaves no partial video in S3. An error names the step it happened in.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from myspinbot.db import JobHistory, ProfileRecord
from myspinbot.errors import JobCancelled, PermanentError
from myspinbot.generation.options import GenerateOptions, portrait_key
from myspinbot.jobs.deps import PipelineDeps
from myspinbot.jobs.handler import JobRun
from myspinbot.jobs.models import Artifact
from myspinbot.jobs.progress import Step
from myspinbot.runtime.lease import LeaseLost
from myspinbot.settings import Settings
from myspinbot.speech.models import Speech
from myspinbot.storage import ArtifactStore
from myspinbot.storage.layout import output_prefix, portrait_cache_key
from myspinbot.voice.profile import VoiceProfile

if TYPE_CHECKING:
    from myspinbot.script import Script

STEPS = [
    Step("script", 5, title="Writing the script"),
    Step("speech", 10, after=("script",), title="Synthesizing speech"),
    Step("stage", 25, after=("speech",), title="Preparing the portrait"),
    Step("animate", 50, after=("stage",), title="Animating the face"),
    Step("finish", 10, after=("animate",), title="Saving the video"),
]
TITLES = {s.name: s.title for s in STEPS}
LORA_FILE = "pytorch_lora_weights.safetensors"
PORTRAIT_FILE = "portrait.png"


class GenerateParams(BaseModel):
    """What the gateway put in the job (gateway/schemas.py GenerateRequest)."""

    model_config = ConfigDict(populate_by_name=True)

    profile_id: str | None = Field(None, alias="profileId")
    mode: Literal["direct", "guided"]
    prompt: str | None = None
    narration: str | None = None
    stage: str | None = None
    options: GenerateOptions = Field(default_factory=GenerateOptions)


# One deps type for every pipeline; the name stays for the function handlers.
GenerateDeps = PipelineDeps


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Name the failing step in the error a person sees."""
    try:
        yield
    except (JobCancelled, StepFailed, StepError, LeaseLost):
        raise
    except PermanentError as exc:
        raise StepFailed(f"{TITLES[name]} failed: {exc}") from exc
    except Exception as exc:
        # Still retried (it may be passing: ffmpeg killed, S3 briefly down), but if the
        # retries run out, the error a person sees names the step.
        raise StepError(f"{TITLES[name]} failed: {type(exc).__name__}: {exc}") from exc


class StepFailed(PermanentError):
    """A step failed for good; the message names it."""


class StepError(RuntimeError):
    """A step failed in a way a retry may fix; the message names it."""


def run_generation(run: JobRun, deps: GenerateDeps) -> dict[str, Any]:
    from myspinbot.animate import get_animator
    from myspinbot.media.upscale import FRAME_UPSCALER, get_upscaler
    from myspinbot.media.video import VideoEncoder, probe
    from myspinbot.speech import get_engine
    from myspinbot.voice.scoring import narration_match

    try:
        params = GenerateParams.model_validate(run.params)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise PermanentError(
            f"The generate job is malformed: {first['msg']} ({'.'.join(map(str, first['loc']))})"
        ) from None
    settings, store, options = deps.settings, deps.store, params.options
    prefix = output_prefix(run.job.id)
    profile = _profile(deps.history, params.profile_id)
    voice = _voice(profile)

    recorded = options.narration_audio is not None
    with step("script"):
        run.progress("script", 0.0, "Writing the script")
        # A recording may come without its transcript: then there is no script text.
        script = None if recorded and not params.narration else _script(params, voice, settings)
        words = len(script.narration.split()) if script else 0
        run.progress("script", 1.0, f"Script ready ({words} words)" if script else "No script")

    with step("speech"):
        engine_name, voice_match = "recording", None
        if options.narration_audio is not None:
            run.progress("speech", 0.0, "Loading the narration recording")
            speech = _recording(deps, options.narration_audio, settings)
        else:
            assert script is not None
            run.progress("speech", 0.0, "Synthesizing speech")
            engine = get_engine(settings)
            engine_name = engine.name
            speech = engine.synthesize(script.narration, voice)
            run.progress("speech", 0.4, f"{speech.duration_s:.1f} s of speech; scoring the voice")
            voice_match = narration_match(speech, script.narration, voice, engine.name)
        if script is not None and not speech.phonemes:
            run.progress("speech", 0.6, "Aligning the words to the speech (lip shapes)")
        speech, lip_note = _aligned(speech, script.narration if script else None)
        run.progress("speech", 1.0, f"{speech.duration_s:.1f} s of speech")

    size = options.size or settings.video_size
    with step("stage"):
        stage = _portrait(run, deps, params, profile, size)
    portrait = stage.image

    animator = get_animator(settings)
    fps = settings.video_fps
    work = size // 2 if options.upscale else size
    frames_total = animator.frame_count(speech.duration_s, fps)
    with tempfile.TemporaryDirectory(prefix="myspinbot-generate-") as tmp:
        wav_path = Path(tmp) / "speech.wav"
        wav_path.write_bytes(speech.wav_bytes())
        video_path = Path(tmp) / "video.mp4"
        encoder = VideoEncoder(video_path, width=size, height=size, fps=fps, audio_wav=wav_path)
        try:
            with step("animate"):
                upscale = get_upscaler(settings) if work != size else None
                source = portrait.resize((work, work), Image.Resampling.LANCZOS)
                frames = animator.animate(
                    source, speech.samples, speech.sample_rate, fps, speech.words, speech.phonemes
                )
                for i, frame in enumerate(frames, start=1):
                    encoder.write(upscale(frame, size) if upscale else frame)
                    run.progress("animate", i / frames_total, f"Rendering frame {i}/{frames_total}")
            with step("finish"):
                run.progress("finish", 0.0, "Encoding the video")
                encoder.close()
        except BaseException:
            encoder.abort()
            raise
        with step("finish"):
            info = probe(video_path)
            run.progress("finish", 0.5, "Uploading")
            try:
                artifacts = _upload(store, prefix, video_path, wav_path, portrait, script)
                run.progress("finish", 1.0, "Video ready")
            except LeaseLost:
                # Another replica took the job over and writes the same prefix: leave it be.
                raise
            except BaseException:
                # Cancelled (or failed) while uploading: a cancelled job leaves no video.
                with contextlib.suppress(Exception):
                    store.delete_prefix(prefix)
                raise
    video = next(a for a in artifacts if a["name"] == "video.mp4")
    return {
        "profileId": params.profile_id,
        "mode": params.mode,
        **stage.result(),
        "script": script.model_dump() if script else None,
        "durationSeconds": round(info.duration_s, 3),
        "fps": fps,
        "frames": info.frames,
        "size": size,
        "speechEngine": engine_name,
        **({"voiceMatch": voice_match.model_dump(by_alias=True)} if voice_match else {}),
        "animator": animator.name,
        "lipSync": _lip_sync(animator, speech, lip_note),
        "upscaler": FRAME_UPSCALER if options.upscale else None,
        "video": video,
        "artifacts": artifacts,
    }


def _recording(deps: GenerateDeps, narration_id: str, settings: Settings) -> Speech:
    from myspinbot.speech.narration import decode_recording, narration_key

    data = deps.store.get_bytes(narration_key(narration_id))
    return decode_recording(data, "The narration recording", settings.narration_max_seconds)


def _aligned(speech: Speech, transcript: str | None) -> tuple[Speech, str | None]:
    """The speech with its phoneme timeline, from forced alignment to the transcript.

    Engine-agnostic: it runs on whatever audio the engine or the person produced. Not
    being able to align is no reason to fail the video: the mouth then follows loudness,
    and the note says so."""
    from myspinbot.speech.align import AlignmentFailed, align

    if speech.phonemes:
        return speech, None
    if not transcript:
        return speech, "No transcript was given, so the mouth follows the loudness only."
    try:
        alignment = align(speech.samples, speech.sample_rate, transcript)
    except AlignmentFailed as exc:
        why = f"The narration could not be aligned to its words ({exc}), "
        return speech, why + "so the mouth follows the loudness only."
    note = None
    if alignment.skipped:
        shown = ", ".join(alignment.skipped[:5])
        note = f"Words not in the pronouncing dictionary were not lip-synced: {shown}."
    timed = Speech(
        samples=speech.samples,
        sample_rate=speech.sample_rate,
        words=speech.words or alignment.words,
        phonemes=alignment.phonemes,
    )
    return timed, note


def _lip_sync(animator: Any, speech: Speech, note: str | None) -> dict[str, Any]:
    """How the mouth was driven: per phoneme, by loudness, or by the fallback animator."""
    mode = getattr(animator, "last_mode", None) or ("phonemes" if speech.phonemes else "loudness")
    return {"mode": mode, **({"note": note} if note else {})}


def _profile(history: JobHistory, profile_id: str | None) -> ProfileRecord | None:
    if profile_id is None:
        return None
    record = history.get_profile(profile_id)
    if record is None:
        raise PermanentError(f"Profile {profile_id!r} does not exist (was it deleted?).")
    return record


def _voice(profile: ProfileRecord | None) -> VoiceProfile | None:
    data = (profile.metadata.get("voice") if profile else None) or None
    return VoiceProfile.model_validate(data) if data else None


def _script(params: GenerateParams, voice: VoiceProfile | None, settings: Settings) -> Any:
    from myspinbot.script import check_narration_length, direct_script, write_script

    if params.mode == "guided":
        script = write_script(
            params.prompt or "", settings, target_seconds=settings.narration_max_seconds * 0.5
        )
        if params.stage:
            script = script.model_copy(update={"stage": params.stage})
    else:
        script = direct_script(params.narration or "", params.stage)
    check_narration_length(script.narration, voice, settings.narration_max_seconds)
    return script


def default_portrait(settings: Settings, has_profile: bool = True) -> Literal["render", "photo"]:
    """Random-weight presets render noise, not people: show the person's photo instead
    (with no profile there is no photo: the base model renders)."""
    placeholder = settings.base_model in (None, "tiny", "sd15-arch")
    return "photo" if placeholder and has_profile else "render"


@dataclass(frozen=True, eq=False)
class Stage:
    """The stage step's outcome: the portrait at the video size and how it was made."""

    image: Image.Image
    portrait: Literal["render", "photo", "upload"]
    note: str | None = None
    render: dict[str, Any] | None = None
    upscale: PortraitUpscale | None = None

    def result(self) -> dict[str, Any]:
        return {
            "portrait": self.portrait,
            **({"portraitNote": self.note} if self.note else {}),
            **({"render": self.render} if self.render else {}),
            **({"portraitUpscale": self.upscale.model_dump(by_alias=True)} if self.upscale else {}),
        }


class PortraitUpscale(BaseModel):
    """How a photo portrait reached the video size (in the generate result)."""

    model_config = ConfigDict(populate_by_name=True)

    source_pixels: int = Field(alias="sourcePixels")  # side of the photo's face square
    upscaler: str | None  # None: the photo had the pixels and was only shrunk
    cached: bool = False  # the learned upscale was done by an earlier job
    fallback_reason: str | None = Field(None, alias="fallbackReason")


def _portrait(
    run: JobRun,
    deps: GenerateDeps,
    params: GenerateParams,
    profile: ProfileRecord | None,
    size: int,
) -> Stage:
    chosen = params.options.portrait or default_portrait(deps.settings, profile is not None)
    note = None
    if params.options.portrait is None and chosen == "photo":
        note = (
            "The built-in base model renders noise, so the profile's best training photo "
            "was used; set MYSPINBOT_BASE_MODEL to a real SD 1.5 model to render scenes."
        )
    if chosen == "render":
        image, render = _render(run, deps, params, profile)
        run.progress("stage", 1.0, "Portrait ready")
        return Stage(_square(image, size), chosen, note, render)
    if chosen == "upload":
        run.progress("stage", 0.0, "Loading the uploaded portrait")
        data = deps.store.get_bytes(portrait_key(params.options.portrait_image or ""))
        square = _uploaded_square(data, params.options.portrait_image or "")
    else:
        if profile is None:
            raise PermanentError("Portrait `photo` needs a profile: choose one, or `render`.")
        run.progress("stage", 0.0, "Loading the profile's photo")
        data, square, old = _profile_photo(deps.store, profile)
        if old:
            note = (
                f"Profile {profile.name!r} was trained before full-size photos were kept, so "
                "its small training crop was enlarged; train it again for a sharper portrait."
            )
    image, upscale = _staged(run, deps, data, square, size)
    run.progress("stage", 1.0, "Portrait ready")
    return Stage(image, chosen, note, None, upscale)


def _uploaded_square(data: bytes, portrait_id: str) -> Image.Image:
    """An uploaded portrait's centred square (the person framed it); it must show a face."""
    from myspinbot.imaging.decode import Unusable, decode_image
    from myspinbot.imaging.faces import largest_face
    from myspinbot.imaging.portrait import centre_square

    try:
        image = decode_image(data)
    except Unusable as exc:
        raise PermanentError(f"The uploaded portrait cannot be used: {exc}") from None
    if largest_face(image) is None:
        # The gateway refuses these at upload, naming the file; this is for older uploads.
        raise PermanentError(
            f"The uploaded portrait {portrait_id!r} shows no face that can be found; "
            "upload a photo with the face clearly visible, facing the camera."
        )
    return centre_square(image)


def _profile_photo(store: ArtifactStore, profile: ProfileRecord) -> tuple[bytes, Image.Image, bool]:
    """The profile's portrait photo: its face-centred master at the photo's resolution.
    Profiles trained before masters were kept have only the training crop (True)."""
    photos = profile.metadata.get("photos") or []
    best = profile.metadata.get("portraitPhoto")
    entry = next((p for p in photos if p.get("name") == best), photos[0] if photos else None)
    key = str(entry["key"]) if entry else _artifact_key(profile, PORTRAIT_FILE)
    data = store.get_bytes(key)
    try:
        image = Image.open(io.BytesIO(data)).convert("RGB")
    except Exception as exc:
        raise PermanentError(
            f"Profile {profile.name!r} has an unreadable portrait photo ({key}): {exc}; "
            "train it again."
        ) from None
    return data, image, entry is None


def _staged(
    run: JobRun, deps: GenerateDeps, data: bytes, square: Image.Image, size: int
) -> tuple[Image.Image, PortraitUpscale]:
    """`square` at the video size: shrunk from the photo's own pixels, or enlarged once by
    the configured upscaler and cached in S3 by the photo's hash and the size."""
    from myspinbot.imaging.portrait import stage_portrait
    from myspinbot.media import upscale

    store, side = deps.store, min(square.size)
    if side >= size:
        portrait = stage_portrait(square, size, upscale.Lanczos())
        return portrait.image, PortraitUpscale(source_pixels=side, upscaler=None)
    digest = hashlib.sha256(data).hexdigest()
    learned = deps.settings.upscaler.strip().lower() in upscale.NEURAL_UPSCALERS
    key = portrait_cache_key(digest, size, upscale.RealEsrgan.name)
    if learned and store.exists(key):
        cached = Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB")
        info = PortraitUpscale(source_pixels=side, upscaler=upscale.RealEsrgan.name, cached=True)
        return cached, info
    message = f"Enlarging the {side} px photo to {size} px"

    def poll() -> None:  # a cancellation point while the model works
        run.progress("stage", 0.2, message)

    upscaler = upscale.portrait_upscaler(deps.settings, poll)
    poll()
    reason = None
    try:
        portrait = stage_portrait(square, size, upscaler)
    except upscale.EsrganUnavailable as exc:
        # The video is still made; the result says what was used instead and why.
        reason = str(exc)
        portrait = stage_portrait(square, size, upscale.Lanczos())
    if portrait.upscaler == upscale.RealEsrgan.name:
        png = io.BytesIO()
        portrait.image.save(png, "PNG")
        store.put_bytes(key, png.getvalue(), "image/png")
    info = PortraitUpscale(source_pixels=side, upscaler=portrait.upscaler, fallback_reason=reason)
    return portrait.image, info


def _render(
    run: JobRun, deps: GenerateDeps, params: GenerateParams, profile: ProfileRecord | None
) -> tuple[Image.Image, dict[str, Any]]:
    from myspinbot.imaging.txt2img import TritonTxt2Img, Txt2ImgOptions, base_model_config
    from myspinbot.models.loading import resolve_base_model
    from myspinbot.triton.client import ModelNotLoaded, TritonClient
    from myspinbot.triton.lora import LoraModels
    from myspinbot.triton.repository import UNET

    settings = deps.settings
    if not settings.triton_url:
        raise PermanentError(
            "Portrait `render` needs Triton: set MYSPINBOT_TRITON_URL (`myspinbot up` starts one)."
        )
    options = params.options
    seed = options.seed if options.seed is not None else random.randrange(2**32)
    base = resolve_base_model(settings.base_model, settings.models_dir)
    token = profile.trigger_token if profile and profile.trigger_token else None
    subject = f"a photo of {token} person" if token else "a portrait photo of a person"
    prompt = f"{subject}, {params.stage}" if params.stage else subject

    triton = TritonClient(
        settings.triton_url, retry_s=settings.triton_retry_s, admin_key=settings.triton_admin_key
    )
    try:
        loras = LoraModels(triton, deps.redis, max_loaded=settings.lora_models_max)
        unet, load_s = UNET, None
        if profile is not None:
            run.progress("stage", 0.02, "Bringing the profile's LoRA online")
            key = _artifact_key(profile, LORA_FILE)
            lora = loras.ensure(profile.id, lambda: deps.store.get_bytes(key))
            unet, load_s = lora.name, lora.load_seconds
        pipe = TritonTxt2Img(base_model_config(base.path_or_id), triton)
        render_options = Txt2ImgOptions(
            steps=options.steps,
            guidance_scale=options.guidance_scale,
            scheduler=options.scheduler,
            seed=seed,
        )

        def on_step(i: int, n: int) -> None:
            run.progress("stage", 0.05 + 0.95 * i / n, f"Rendering the scene, step {i}/{n}")

        try:
            pixels = pipe(prompt, render_options, unet_model=unet, on_step=on_step)
        except ModelNotLoaded:
            # Evicted by another replica, or Triton restarted: load it again, once.
            if profile is None:
                raise
            key = _artifact_key(profile, LORA_FILE)
            lora = loras.ensure(profile.id, lambda: deps.store.get_bytes(key))
            unet, load_s = lora.name, lora.load_seconds
            pixels = pipe(prompt, render_options, unet_model=unet, on_step=on_step)
    finally:
        triton.close()
    info = {
        "prompt": prompt,
        "seed": seed,
        "steps": options.steps,
        "guidanceScale": options.guidance_scale,
        "scheduler": options.scheduler,
        "model": unet,
        "loraLoadSeconds": None if load_s is None else round(load_s, 3),
    }
    return Image.fromarray(np.round(pixels * 255).astype(np.uint8)), info


def _artifact_key(profile: ProfileRecord, name: str) -> str:
    for artifact in profile.artifacts:
        if artifact.get("name") == name:
            return str(artifact["key"])
    raise PermanentError(f"Profile {profile.name!r} has no {name}; train it again.")


def _square(image: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square, then resize to the video size."""
    from myspinbot.imaging.portrait import centre_square

    return centre_square(image).resize((size, size), Image.Resampling.LANCZOS)


def _upload(
    store: ArtifactStore,
    prefix: str,
    video: Path,
    wav: Path,
    portrait: Image.Image,
    script: Script | None,
) -> list[dict[str, Any]]:
    png = io.BytesIO()
    portrait.save(png, "PNG")
    artifacts: list[Artifact] = []
    files = [
        ("speech.wav", wav.read_bytes(), "audio/wav"),
        ("stage.png", png.getvalue(), "image/png"),
    ]
    if script is not None:
        dump = json.dumps(script.model_dump(), indent=2).encode()
        files.append(("script.json", dump, "application/json"))
    # The video last: a listing that shows it shows a complete set.
    for name, data, ctype in files:
        store.put_bytes(prefix + name, data, ctype)
        artifacts.append(Artifact(name=name, key=prefix + name, size=len(data), content_type=ctype))
    size = store.put_file(prefix + "video.mp4", video, "video/mp4")
    artifacts.append(
        Artifact(name="video.mp4", key=prefix + "video.mp4", size=size, content_type="video/mp4")
    )
    # Keys, not links: the gateway signs a short-lived link whenever it shows the result.
    return [a.stored() for a in artifacts]
