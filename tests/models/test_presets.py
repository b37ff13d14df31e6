"""The built-in base models: built offline from configs, loaded like a real SD 1.5."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from transformers import CLIPTokenizer

from myspinbot.models import presets
from myspinbot.models.loading import ResolvedModel, load_components, resolve_base_model
from myspinbot.models.tokenizer import CAPTION_WORDS, build_vocab, write_tokenizer
from tests.models.support import CAPTION, one_thread


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ResolvedModel:
    return resolve_base_model(None, tmp_path_factory.mktemp("cache"))


def test_tiny_is_a_complete_pipeline_that_renders_at_its_native_size(tiny: ResolvedModel) -> None:
    assert (tiny.spec, tiny.preset, tiny.is_placeholder) == ("tiny", "tiny", True)
    assert tiny.native_resolution == 64
    root = Path(tiny.path_or_id)
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (root / part).is_dir(), part
    assert (root / "model_index.json").is_file()

    pipe = StableDiffusionPipeline.from_pretrained(tiny.path_or_id)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(CAPTION, num_inference_steps=3, generator=torch.Generator().manual_seed(0)).images[
        0
    ]
    assert image.size == (64, 64)
    assert np.asarray(image).std() > 0  # noise, but not a blank image


def test_tiny_unet_has_about_a_million_parameters(tiny: ResolvedModel) -> None:
    unet = load_components(tiny).unet
    count = sum(p.numel() for p in unet.parameters())
    assert 0.7e6 < count < 1.5e6
    assert presets.count_parameters("tiny")["unet"] == count


def test_tokenizer_splits_captions_into_words_and_round_trips(tiny: ResolvedModel) -> None:
    tokenizer = CLIPTokenizer.from_pretrained(tiny.path_or_id, subfolder="tokenizer")
    ids = tokenizer(CAPTION).input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.convert_ids_to_tokens(ids[1:-1]) == [f"{w}</w>" for w in CAPTION.split()]
    assert tokenizer.decode(ids, skip_special_tokens=True) == CAPTION
    # Words outside the built-in list still encode (byte by byte) and decode.
    text = "zebra 42 ünïcode"
    assert (
        tokenizer.decode(tokenizer(text).input_ids, skip_special_tokens=True) == "zebra 4 2 ünïcode"
    )
    for word in CAPTION_WORDS:
        assert len(tokenizer.tokenize(word)) == 1, word

    components = load_components(tiny)
    assert components.text_encoder.config.vocab_size == len(tokenizer)
    assert components.text_encoder.config.eos_token_id == tokenizer.eos_token_id
    assert tokenizer.model_max_length == components.text_encoder.config.max_position_embeddings


def test_same_seed_builds_the_same_weights(tmp_path: Path, tiny: ResolvedModel) -> None:
    def weights(path: Path) -> bytes:
        return (path / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()

    again = presets.build_preset("tiny", tmp_path / "again", seed=0)
    other = presets.build_preset("tiny", tmp_path / "other", seed=1)
    assert weights(again) == weights(Path(tiny.path_or_id))
    assert weights(other) != weights(again)


def test_sd15_arch_is_the_sd15_architecture() -> None:
    # Counted on the meta device: nothing is allocated. These are SD 1.5's exact counts.
    assert presets.count_parameters("sd15-arch") == {
        "unet": 859_520_964,
        "vae": 83_653_863,
        "text_encoder": 123_060_480,
    }
    assert presets.SD15_ARCH.native_resolution == 512


def test_sd15_arch_tokenizer_has_clips_vocabulary_size(tmp_path: Path) -> None:
    vocab, merges = build_vocab(49408)
    assert len(vocab) == 49408
    assert (vocab["<|startoftext|>"], vocab["<|endoftext|>"]) == (49406, 49407)
    assert len(merges) >= 49408 - 512 - 2

    write_tokenizer(tmp_path, 49408)
    tokenizer = CLIPTokenizer.from_pretrained(str(tmp_path))
    assert len(tokenizer) == 49408
    ids = tokenizer(CAPTION, padding="max_length", max_length=77).input_ids
    assert len(ids) == 77 and max(ids) < 49408
    assert tokenizer.decode(ids, skip_special_tokens=True) == CAPTION


def test_unknown_preset_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        presets.build_preset("sd99", tmp_path)
