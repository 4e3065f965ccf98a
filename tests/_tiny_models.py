"""Tiny random causal LMs and token rows for mechanics tests (seconds on 2 CPU cores)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

VOCAB = 14


def tiny_gpt2(seed: int = 0, tie: bool = True) -> GPT2LMHeadModel:
    """GPT-2 with Conv1D layers: n_embd 32, 2 layers, MLP 128, vocab 14, no dropout."""
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=32, bos_token_id=0,
                        eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=tie)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # GPT-2's std-0.02 init gives near-uniform outputs; larger weights make masks matter
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5)
    return model


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    """Llama with nn.Linear layers and a gated MLP: hidden 32, 2 layers, MLP 64, vocab 14, untied."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32, bos_token_id=0,
                         eos_token_id=0, pad_token_id=0, tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


def memorizer_of(data: torch.Tensor, steps: int = 300) -> GPT2LMHeadModel:
    """A tiny GPT-2 trained (Adam, lr 3e-3, full batch) until it reproduces the rows of `data`; in eval mode."""
    with one_thread():
        model = tiny_gpt2()
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(steps):
            optimizer.zero_grad()
            model(data, labels=data).loss.backward()
            optimizer.step()
        return model.eval()


def token_rows(n: int, length: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, length), generator=torch.Generator().manual_seed(seed))


@contextlib.contextmanager
def one_thread():
    """Tiny models run ~40x faster single-threaded when the 2 cores are busy (thread oversubscription)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# Five MLP layouts: gated nn.Linear (Llama, Qwen2, Gemma 3), GPT-NeoX dense_h_to_4h/dense_4h_to_h, GPT-2 Conv1D.
ARCHITECTURES = ["llama", "qwen2", "gemma3", "gpt_neox", "gpt2"]
SIZES = {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 32, "bos_token_id": 0,
         "eos_token_id": 0, "pad_token_id": 0, "tie_word_embeddings": False}


def _build(arch: str) -> nn.Module:
    if arch == "llama":
        return LlamaForCausalLM(LlamaConfig(**SIZES))
    if arch == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**SIZES))
    if arch == "gemma3":
        return Gemma3ForCausalLM(Gemma3TextConfig(**SIZES, head_dim=16, sliding_window=8))
    if arch == "gpt_neox":
        sizes = {k: v for k, v in SIZES.items() if k != "num_key_value_heads"}
        return GPTNeoXForCausalLM(GPTNeoXConfig(**sizes, hidden_dropout=0.0, attention_dropout=0.0))
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_inner=64, n_positions=32,
                                      bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0,
                                      attn_pdrop=0.0, tie_word_embeddings=False))


def tiny_model(arch: str, seed: int = 0) -> nn.Module:
    """One of ARCHITECTURES: hidden 32, 2 layers, MLP 64, vocab 14, untied, weights x5."""
    torch.manual_seed(seed)
    model = _build(arch).eval()
    with torch.no_grad():  # larger weights than the std-0.02 init, so that masks visibly change the outputs
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5)
    return model
