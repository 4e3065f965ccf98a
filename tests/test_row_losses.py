"""The memory-bounded per-row loss (`hf_memmit.unlearning.data.row_losses`): the same losses and gradients as
full logits on five model families, and no [batch, tokens, vocab] tensor at a GPT-2-sized vocabulary."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from _tiny_models import ARCHITECTURES as ARCHS
from _tiny_models import one_thread, token_rows
from _tiny_models import tiny_model as tiny
from transformers import Gemma2Config, Gemma2ForCausalLM, GPT2Config, GPT2LMHeadModel

import hf_memmit  # noqa: F401
from hf_memmit.tuners import NeuronMaskConfig, WeightMaskConfig
from hf_memmit.unlearning.data import LOGITS_PER_CHUNK, lockstep_losses, row_losses, token_losses
from hf_memmit.unlearning.neuron.rows import suffix_losses, target_mask


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def reference(model, x, mask, valid=None):
    """The plain computation (the former `row_losses`): full fp32 logits, masked mean per row."""
    logits = model(input_ids=x, attention_mask=mask).logits[:, :-1].float()
    ce = F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
    if valid is None:
        if mask is None:
            return ce.mean(dim=1)
        valid = mask[:, 1:]
    v = valid.to(ce.dtype)
    return (ce * v).sum(dim=1) / v.sum(dim=1).clamp_min(1)


def rows_and_mask():
    x = token_rows(4, length=13, seed=3)
    mask = torch.ones_like(x)
    mask[1, 9:] = 0  # right padding
    mask[2, :4] = 0  # left padding
    return x, mask


def grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same(model, new, ref):
    assert torch.allclose(new, ref, atol=1e-5, rtol=1e-5), (new, ref)
    weights = torch.arange(1, len(new) + 1, dtype=new.dtype)  # distinct row weights: per-row gradients matter
    g_new, g_ref = grads(model, (new * weights).sum()), grads(model, (ref * weights).sum())
    assert g_new.keys() == g_ref.keys() and g_new
    for name in g_ref:
        assert torch.allclose(g_new[name], g_ref[name], atol=1e-5, rtol=1e-4), name


def gemma2_softcapped():
    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=14, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=2, head_dim=16, final_logit_softcapping=2.0,
                          tie_word_embeddings=False)
    model = Gemma2ForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5)
    return model


MODELS = [*ARCHS, "gemma2_softcap", "gpt2_tied"]


def build(name):
    if name == "gemma2_softcap":
        return gemma2_softcapped()
    if name == "gpt2_tied":
        from _tiny_models import tiny_gpt2

        return tiny_gpt2(tie=True)
    return tiny(name)


@pytest.mark.parametrize("chunk_size", [1, 5, None])
@pytest.mark.parametrize("name", MODELS)
def test_chunked_equals_full_logits(name, chunk_size):
    model = build(name)
    x, mask = rows_and_mask()  # 4 rows x 12 predictions: chunks of 5 do not divide the 41 scored positions
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to the full-logits path
        new = row_losses(model, x, mask, chunk_size=chunk_size)
    assert_same(model, new, reference(model, x, mask))
    assert_same(model, row_losses(model, x, None, chunk_size=chunk_size), reference(model, x, None))


@pytest.mark.parametrize("name", MODELS)
def test_frozen_head_computes_each_chunk_once(name):
    """With the output embedding frozen (what unlearning does), each chunk's logits are computed once, in the
    forward pass, with its gradient; losses and gradients stay those of the full logits."""
    model = build(name)
    head = model.get_output_embeddings()
    for p in head.parameters():
        p.requires_grad_(False)
    x, mask = rows_and_mask()  # 41 scored positions: 9 chunks of 5
    calls = []
    handle = head.register_forward_hook(lambda *_: calls.append(1))
    try:
        new = row_losses(model, x, mask, chunk_size=5)
        grads(model, (new * torch.arange(1, 5)).sum())
    finally:
        handle.remove()
    # the model's own last-position logits, the split check, then 9 chunks (checkpointing would make it 2 + 18)
    assert len(calls) == 2 + 9, len(calls)
    assert_same(model, row_losses(model, x, mask, chunk_size=5), reference(model, x, mask))


@pytest.mark.parametrize("name", ["gpt2", "llama", "gemma2_softcap"])
def test_suffix_losses_equal_full_logits(name):
    model = build(name)
    x, mask = rows_and_mask()
    valid = target_mask(x, mask, prefix_len=5)
    assert_same(model, suffix_losses(model, x, mask, 5), reference(model, x, mask, valid))
    assert_same(model, row_losses(model, x, mask, valid=valid, chunk_size=4), reference(model, x, mask, valid))


def test_token_losses_are_per_position_and_zero_where_not_scored():
    model = build("llama")
    x, mask = rows_and_mask()
    logits = model(input_ids=x, attention_mask=mask).logits[:, :-1].float()
    full = F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
    per_token = token_losses(model, x, mask, chunk_size=7)
    valid = mask[:, 1:].bool()
    assert per_token.shape == (4, 12) and per_token.dtype == torch.float32
    assert torch.allclose(per_token[valid], full[valid], atol=1e-5) and (per_token[~valid] == 0).all()
    with pytest.raises(ValueError, match=r"valid has shape \(4, 13\); allowed: \[batch, n_tokens - 1\]"):
        token_losses(model, x, mask, valid=mask.bool())
    with pytest.raises(ValueError, match="chunk_size=0"):
        token_losses(model, x, mask, chunk_size=0)


@pytest.mark.parametrize("kind", ["weight", "neuron"])
@pytest.mark.parametrize("name", ["gpt2", "qwen2"])
def test_gradients_reach_the_masks(name, kind):
    """The unlearning methods backprop to mask scores and per-unit coefficients inside the MLP."""
    from peft import get_peft_model

    x, mask = rows_and_mask()
    config = WeightMaskConfig() if kind == "weight" else NeuronMaskConfig(trainable_coefficients=True)
    model = get_peft_model(build(name), config)
    if kind == "weight":
        model.base_model.start_scores(0.2, seed=0)
    new, ref = row_losses(model, x, mask, chunk_size=3), reference(model, x, mask)
    assert torch.allclose(new, ref, atol=1e-5)
    g_new, g_ref = grads(model, new.sum()), grads(model, ref.sum())
    assert any("weight_mask_scores" in n or "neuron_mask_coef" in n for n in g_new)
    for n in g_ref:
        assert torch.allclose(g_new[n], g_ref[n], atol=1e-5, rtol=1e-4), n


class _ScaledLogits(GPT2LMHeadModel):
    """Logits that are not output_embeddings(decoder states): the split must notice and fall back."""

    def forward(self, input_ids=None, attention_mask=None, logits_to_keep=0, **kwargs):
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep,
                              **kwargs)
        out.logits = out.logits * 2
        return out


def test_a_model_the_split_does_not_fit_falls_back_to_full_logits():
    torch.manual_seed(0)
    model = _ScaledLogits(GPT2Config(vocab_size=14, n_embd=32, n_layer=1, n_head=2, n_positions=32)).eval()
    x, mask = rows_and_mask()
    with pytest.warns(UserWarning, match="_ScaledLogits computes its logits other than"):
        new = row_losses(model, x, mask)
    assert_same(model, new, reference(model, x, mask))
    assert_same(model, row_losses(model, x, mask), reference(model, x, mask))  # remembered: no second warning


def test_no_batch_by_tokens_by_vocab_tensor():
    """GPT-2's vocabulary, batch 8 x 128 tokens: no logits tensor over all positions, neither in the forward
    (output embedding outputs, cross-entropy inputs) nor saved for the backward. The former full-logits code
    made and saved [8, 128, 50257]."""
    vocab, batch, length = 50257, 8, 128
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=1, n_head=2, n_positions=length))
    x = torch.randint(0, vocab, (batch, length))
    full = batch * (length - 1) * vocab
    head_outputs, ce_inputs, saved = [], [], []
    handle = model.get_output_embeddings().register_forward_hook(
        lambda module, args, out: head_outputs.append(out.numel()))
    cross_entropy = F.cross_entropy

    def recording(inp, *args, **kwargs):
        ce_inputs.append(inp.numel())
        return cross_entropy(inp, *args, **kwargs)

    def pack(t):
        saved.append(t.numel())
        return t

    try:
        F.cross_entropy = recording
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = row_losses(model, x, None).mean()
        loss.backward()
    finally:
        F.cross_entropy = cross_entropy
        handle.remove()
    bound = LOGITS_PER_CHUNK
    assert head_outputs and max(head_outputs) <= bound < full, head_outputs
    assert ce_inputs and max(ce_inputs) <= bound, ce_inputs
    assert max(saved) < bound, max(saved)  # checkpointed chunks: their logits are not kept for the backward
    assert model.get_output_embeddings().weight.grad is not None


def test_lockstep_losses_run_one_forward_pass_per_call():
    """Under `lockstep_losses` (DeepSpeed ZeRO-3 fitting) every call runs the model exactly once: the full-logits
    path for any rows, and one dummy row for none, whose empty result is still tied to the graph. Outside, a call
    without rows runs nothing, and the rows' losses are the same in both."""
    model = tiny("gpt2")
    calls = []
    model.lm_head.register_forward_hook(lambda *_: calls.append(1))
    x = token_rows(3, length=12, seed=0)
    with one_thread():
        plain = row_losses(model, x, None, chunk_size=5)
        chunked_calls, calls[:] = len(calls), []
        with lockstep_losses(model):
            locked = row_losses(model, x, None, chunk_size=5)
            assert len(calls) == 1
            empty = row_losses(model, x[:0], None)
            assert len(calls) == 2 and empty.shape == (0,) and empty.requires_grad
            empty.sum().backward()  # reaches the model's modules, adds nothing
        calls.clear()
        assert row_losses(model, x[:0], None).shape == (0,) and calls == []
    assert chunked_calls > 1
    torch.testing.assert_close(locked, plain, rtol=1e-5, atol=1e-6)
