"""An offline CLIP tokenizer: byte-level BPE vocab and merges generated, never downloaded.

The layout matches OpenAI's CLIP vocabulary, so the files load through the same
`CLIPTokenizer.from_pretrained(..., subfolder="tokenizer")` call as a real SD 1.5 checkpoint:
the 256 byte symbols, the same 256 with the end-of-word marker `</w>`, one token per merge
in merge order, then `<|startoftext|>` and `<|endoftext|>` last (49406 and 49407 at full size).

The merges are not learnt from text. A short list of caption words is spelled out first so
that prompts like "a photo of sks person" become one token per word; when a size is asked
for, pairs of common characters pad the vocabulary up to it.
"""

from __future__ import annotations

import itertools
import json
from functools import lru_cache
from pathlib import Path

from myspinbot.models.hf import hf

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
MODEL_MAX_LENGTH = 77

# Words of typical identity-LoRA captions and prompts.
_CAPTION_TEXT = (
    "a an the of in on at with and photo portrait picture close up closeup face headshot "
    "person man woman boy girl people sks ohwx smiling smile looking camera wearing shirt "
    "hair eyes light background studio outdoor indoor high quality detailed realistic "
    "style painting drawing standing sitting front side view"
)
CAPTION_WORDS = tuple(_CAPTION_TEXT.split())

# Characters whose pairs pad a vocabulary: the ones captions are mostly made of.
_PADDING_CHARS = "etaoinshrdlcumwfgypbvkjxqz0123456789.,'-!?"


@lru_cache(maxsize=1)
def _byte_symbols() -> tuple[str, ...]:
    """GPT-2/CLIP's printable stand-ins for the 256 byte values, in CLIP's vocab order."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    symbols = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return tuple(symbols[b] for b in printable) + tuple(
        symbols[b] for b in range(256) if b not in printable
    )


def build_vocab(vocab_size: int | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary (token -> id) and merges, exactly `vocab_size` tokens when given."""
    base = list(_byte_symbols())
    tokens = base + [s + END_OF_WORD for s in base]
    known = set(tokens)
    ranks: dict[tuple[str, str], int] = {}

    def add(left: str, right: str) -> None:
        if (left, right) in ranks:
            return
        ranks[left, right] = len(ranks)
        if left + right not in known:
            known.add(left + right)
            tokens.append(left + right)

    for word in CAPTION_WORDS:
        # Join what the merges so far leave of the word, left to right. New merges rank after
        # all earlier ones, so they cannot change how earlier words split.
        pieces = _bpe([*word[:-1], word[-1] + END_OF_WORD], ranks)
        while len(pieces) > 1:
            add(pieces[0], pieces[1])
            pieces = [pieces[0] + pieces[1], *pieces[2:]]

    if vocab_size is not None:
        if len(tokens) + 2 > vocab_size:
            raise ValueError(f"vocab_size {vocab_size} is below the minimum {len(tokens) + 2}")
        candidates = (
            (left, right + suffix)
            for left, right in itertools.chain(
                itertools.product(_PADDING_CHARS, _PADDING_CHARS), itertools.product(base, base)
            )
            for suffix in (END_OF_WORD, "")
        )
        while len(tokens) + 2 < vocab_size:
            add(*next(candidates))

    tokens += [BOS_TOKEN, EOS_TOKEN]
    return {token: i for i, token in enumerate(tokens)}, list(ranks)


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encode one word: repeatedly apply the lowest-ranked merge present."""
    while len(symbols) > 1:
        pairs = [
            (ranks.get(pair, len(ranks)), i) for i, pair in enumerate(itertools.pairwise(symbols))
        ]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        symbols = [*symbols[:i], symbols[i] + symbols[i + 1], *symbols[i + 2 :]]
    return symbols


def write_tokenizer(dest: Path, vocab_size: int | None = None) -> int:
    """Write a loadable CLIP tokenizer directory; returns its vocabulary size.

    `vocab.json` and `merges.txt` are the files SD 1.5 ships; `save_pretrained` adds the
    configs (special tokens, max length) that `from_pretrained` reads next to them.
    """
    vocab, merges = build_vocab(vocab_size)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_text = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    (dest / "merges.txt").write_text(merges_text, encoding="utf-8")

    tokenizer = hf("transformers").CLIPTokenizer(
        vocab=vocab, merges=merges, model_max_length=MODEL_MAX_LENGTH
    )
    tokenizer.save_pretrained(str(dest))
    return len(vocab)
