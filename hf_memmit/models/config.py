"""TinyMem model configs (Sakarvadia et al. 2025, "Mitigating Memorization in Language Models"): plain GPT-2,
so checkpoints load with `AutoModelForCausalLM`."""

from __future__ import annotations

import math

from transformers import GPT2Config, GPT2LMHeadModel

from ..data.tokenizers import GPT2_EOS, GPT2_VOCAB_SIZE, MATH_BOS, MATH_EOS, MATH_PAD
from ..utils import check_choice

LAYERS = (2, 4, 8, 16)
N_EMBD = 128


def tinymem_config(task: str = "math", n_layer: int = 4, *, allow_custom_layers: bool = False,
                   max_ctx: int = 150) -> GPT2Config:
    """The paper's GPT-2: n_embd 128, 4 heads, n_inner 512, ReLU, no dropout, init std 0.8/sqrt(128), tied
    embeddings, no KV cache by default. `n_layer` is one of 2/4/8/16; any positive count with
    `allow_custom_layers=True` (the documented custom path)."""
    check_choice("task", task, ("math", "language"))
    if not allow_custom_layers:
        check_choice("n_layer", n_layer, LAYERS)
    elif not (isinstance(n_layer, int) and n_layer >= 1):
        raise ValueError(f"n_layer={n_layer!r} must be a positive integer")
    if task == "math":
        vocab, bos, eos, pad = 14, MATH_BOS, MATH_EOS, MATH_PAD
    else:
        vocab, bos, eos, pad = GPT2_VOCAB_SIZE, GPT2_EOS, GPT2_EOS, GPT2_EOS
    return GPT2Config(
        vocab_size=vocab, n_positions=max_ctx, n_embd=N_EMBD, n_layer=n_layer, n_head=4, n_inner=4 * N_EMBD,
        activation_function="relu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        initializer_range=0.8 / math.sqrt(N_EMBD), use_cache=False, tie_word_embeddings=True,
        bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
    )


def tinymem_model(task: str = "math", n_layer: int = 4, seed: int | None = None, **kwargs) -> GPT2LMHeadModel:
    """A freshly initialised TinyMem model (deterministic when `seed` is given)."""
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    return GPT2LMHeadModel(tinymem_config(task, n_layer, **kwargs))
