"""The mask tuners, the unlearning methods and tied dropout on five model families, through the one MLP finder
(`hf_memmit.models.mlp`): Llama, Qwen2, Gemma 3 (gated nn.Linear MLPs), GPT-NeoX (dense_h_to_4h/dense_4h_to_h)
and GPT-2 (Conv1D, weight [in, out]). Tiny random models: hidden 32, 2 layers, MLP 64, vocab 14."""

from __future__ import annotations

import copy

import pytest
import torch
from _tiny_models import ARCHITECTURES, VOCAB, one_thread, tiny_model, token_rows
from peft import PeftModel, get_peft_model
from torch import nn

import hf_memmit  # noqa: F401  (registers the mask tuners with peft)
from hf_memmit.models.mlp import find_mlps, mlp_target_regex
from hf_memmit.trainers.tied_dropout import TiedDropoutConfig, attach_tied_dropout
from hf_memmit.tuners import NeuronMaskConfig, WeightMaskConfig
from hf_memmit.unlearning import ActConfig, BalancedSubnetConfig, ZeroConfig, unlearn

ARCHS = ARCHITECTURES
EXPECTED = {  # (layout, down projection of block 1, transposed)
    "llama": ("gated", "model.layers.1.mlp.down_proj", False),
    "qwen2": ("gated", "model.layers.1.mlp.down_proj", False),
    "gemma3": ("gated", "model.layers.1.mlp.down_proj", False),
    "gpt_neox": ("gpt_neox", "gpt_neox.layers.1.mlp.dense_4h_to_h", False),
    "gpt2": ("gpt2", "transformer.h.1.mlp.c_proj", True),
}


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def logits(model, x):
    with torch.no_grad():
        return model(input_ids=x).logits


@pytest.mark.parametrize("arch", ARCHS)
def test_find_mlps(arch):
    model = tiny_model(arch)
    blocks = find_mlps(model)
    layout, down, transposed = EXPECTED[arch]
    assert [b.layer for b in blocks] == [0, 1]
    assert {b.layout for b in blocks} == {layout}
    assert blocks[1].down_name == down and blocks[1].down is model.get_submodule(down)
    assert all(b.hidden_size == 64 and b.transposed is transposed for b in blocks)
    assert all(model.get_submodule(n) is m for b in blocks for n, m in zip(b.input_names, b.inputs))
    # inside a PeftModel the same blocks are found, wrapped
    wrapped = get_peft_model(copy.deepcopy(model), NeuronMaskConfig())
    assert [b.hidden_size for b in find_mlps(wrapped)] == [64, 64]


def test_default_targets_are_the_old_ones_for_gpt2_and_llama():
    assert mlp_target_regex(tiny_model("gpt2")) == r".*\.mlp\.(c_fc|c_proj)"
    assert mlp_target_regex(tiny_model("gpt2"), "down") == r".*\.mlp\.c_proj"
    assert mlp_target_regex(tiny_model("llama")) == r".*\.mlp\.(gate_proj|up_proj|down_proj)"
    assert mlp_target_regex(tiny_model("llama"), "down") == r".*\.mlp\.down_proj"
    assert mlp_target_regex(tiny_model("gpt_neox")) == r".*\.mlp\.(dense_h_to_4h|dense_4h_to_h)"


def _random_mask(peft_model, kind: str, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    if kind == "weight":
        masks = {n: torch.rand(k.shape, generator=g) > 0.3 for n, k in peft_model.base_model.keep_masks().items()}
        peft_model.base_model.set_keep_masks(masks)
    else:
        keep = peft_model.base_model.keep_mask()
        peft_model.base_model.set_keep_mask(torch.rand(keep.shape, generator=g) > 0.3)


@pytest.mark.parametrize("kind", ["weight", "neuron"])
@pytest.mark.parametrize("arch", ARCHS)
def test_mask_tuners(arch, kind, tmp_path):
    x = token_rows(3, length=10)
    model = tiny_model(arch)
    base = logits(model, x)
    config = WeightMaskConfig() if kind == "weight" else NeuronMaskConfig()
    peft_model = get_peft_model(model, config)
    layers = 3 if kind == "weight" and arch in ("llama", "qwen2", "gemma3") else (2 if kind == "weight" else 1)
    assert len(peft_model.base_model.targeted_module_names) == 2 * layers
    assert torch.equal(logits(peft_model, x), base)  # an all-keep mask changes nothing
    _random_mask(peft_model, kind)
    masked = logits(peft_model, x)
    assert not torch.allclose(masked, base, atol=1e-4)

    peft_model.save_pretrained(tmp_path / "adapter")
    loaded = PeftModel.from_pretrained(tiny_model(arch), tmp_path / "adapter")
    assert torch.equal(logits(loaded, x), masked)

    with peft_model.disable_adapter():
        assert torch.equal(logits(peft_model, x), base)
    merged = peft_model.merge_and_unload()
    assert type(merged) is type(tiny_model(arch))
    assert not any("mask" in n for n, _ in merged.named_modules())
    assert torch.allclose(logits(merged, x), masked, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_unlearning_methods_run(arch):
    forget, retain = token_rows(8, length=10, seed=1), token_rows(8, length=10, seed=2)
    x = token_rows(2, length=10)
    base = logits(tiny_model(arch), x)
    weight = unlearn(tiny_model(arch), BalancedSubnetConfig(ratio=0.1, epochs=1, batch_size=4), forget, retain,
                     progress=False)
    masked, total = weight.base_model.masked_count()
    assert total > 0 and masked == sum(int(0.1 * k.numel()) for k in weight.base_model.keep_masks().values())
    assert not torch.allclose(logits(weight, x), base, atol=1e-4)
    for config in (ZeroConfig(ratio=0.1, batch_size=4), ActConfig(ratio=0.1, batch_size=4)):
        neuron = unlearn(tiny_model(arch), config, forget, progress=False)
        keep = neuron.base_model.keep_mask()
        assert keep.shape == (2, 64) and (~keep).sum(dim=1).tolist() == [6, 6]
        assert not torch.allclose(logits(neuron, x), base, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_tied_dropout_attaches(arch):
    x = token_rows(2, length=10)
    model = tiny_model(arch)
    base = logits(model, x)
    td = attach_tied_dropout(model, TiedDropoutConfig(p_gen=0.5, p_mem=0.5))
    assert [name for name, _ in td.targets] == [b.down_name for b in find_mlps(model)]
    assert td.n_units == 64
    dropped = logits(model, x)  # eval default: drop mode, the pool units are off
    assert not torch.allclose(dropped, base, atol=1e-4)
    model.train()
    with td.keys([3, 4]):
        out = model(input_ids=x).logits
    out.sum().backward()
    model.eval()
    td.merge("drop")
    assert torch.allclose(logits(model, x), dropped, atol=1e-5)


class _NoMLP(nn.Module):
    """A wrapper whose blocks hold no MLP of a known layout."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleDict({"proj": nn.Linear(4, 4)}) for _ in range(2))


def test_a_model_without_an_mlp_gives_a_clear_error():
    models = [_NoMLP()]
    try:
        from transformers import MambaConfig, MambaForCausalLM

        models.append(MambaForCausalLM(MambaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                                   state_size=4)))
    except ImportError:
        pass
    for model in models:
        for call in (lambda m: find_mlps(m), lambda m: get_peft_model(m, WeightMaskConfig()),
                     lambda m: get_peft_model(m, NeuronMaskConfig()),
                     lambda m: attach_tied_dropout(m, TiedDropoutConfig())):
            with pytest.raises(ValueError, match=r"has no supported MLP; allowed model types: .*gate_proj, up_proj "
                                                 r"-> down_proj.*c_fc -> c_proj.*dense_h_to_4h -> dense_4h_to_h"):
                call(copy.deepcopy(model))
