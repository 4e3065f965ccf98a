"""Mechanics of the weight-mask and neuron-mask PEFT tuners on tiny random GPT-2 (Conv1D) and Llama (nn.Linear)."""

import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from _tiny_models import one_thread, tiny_gpt2, tiny_llama, token_rows
from peft import PeftModel, get_peft_model
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
from safetensors.torch import load_file

from hf_memmit.compat import peft_version_gap
from hf_memmit.tuners import (
    NeuronMaskConfig,
    NeuronMaskModel,
    WeightMaskConfig,
    n_masked,
    pack_bits,
    unpack_bits,
)


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def logits(model, x):
    with torch.no_grad():
        return model(x).logits


def random_keep(tuner, fraction=0.3, seed=0, adapter="default"):
    g = torch.Generator().manual_seed(seed)
    masks = {n: torch.rand(k.shape, generator=g) > fraction for n, k in tuner.keep_masks(adapter).items()}
    tuner.set_keep_masks(masks, adapter)
    return masks


MODELS = {"gpt2": tiny_gpt2, "llama": tiny_llama}


def test_registered_with_peft():
    assert PEFT_TYPE_TO_CONFIG_MAPPING["WEIGHT_MASK"] is WeightMaskConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING["NEURON_MASK"] is NeuronMaskModel
    assert WeightMaskConfig().peft_type.value == "WEIGHT_MASK"  # transformers calls .value


@pytest.mark.parametrize("shape", [(3,), (8,), (5, 7), (32, 128), (1, 1)])
def test_bit_packing_matches_numpy(shape):
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(1)) > 0.5
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-mask.numel() // 8)
    assert np.array_equal(packed.numpy()[: mask.numel() // 8], np.packbits(mask.numpy().reshape(-1))[: mask.numel() // 8])
    assert torch.equal(unpack_bits(packed, shape), mask)


def test_default_targets_are_the_mlp():
    gpt2 = get_peft_model(tiny_gpt2(), WeightMaskConfig())
    assert sorted(gpt2.base_model.targeted_module_names) == [
        f"transformer.h.{i}.mlp.{m}" for i in range(2) for m in ("c_fc", "c_proj")]  # not attn.c_proj
    llama = get_peft_model(tiny_llama(), WeightMaskConfig())
    assert len(llama.base_model.targeted_module_names) == 6
    neurons = get_peft_model(tiny_gpt2(), NeuronMaskConfig())
    assert sorted(neurons.base_model.targeted_module_names) == ["transformer.h.0.mlp.c_proj", "transformer.h.1.mlp.c_proj"]


@pytest.mark.parametrize("arch", MODELS)
@pytest.mark.parametrize("config_cls", [WeightMaskConfig, NeuronMaskConfig])
def test_all_keep_mask_is_bit_identical_to_base(arch, config_cls):
    model, x = MODELS[arch](), token_rows(4)
    base = logits(model, x)
    peft_model = get_peft_model(model, config_cls())
    assert torch.equal(logits(peft_model, x), base)


@pytest.mark.parametrize("arch", MODELS)
def test_masked_forward_equals_merged_weights(arch):
    model, x = MODELS[arch](), token_rows(4)
    reference = copy.deepcopy(model)
    peft_model = get_peft_model(model, WeightMaskConfig())
    masks = random_keep(peft_model.base_model)
    masked = logits(peft_model, x)
    # the same edit done by hand on a copy of the base model
    with torch.no_grad():
        for name, keep in masks.items():
            reference.get_submodule(name).weight.mul_(keep)
    assert torch.equal(masked, logits(reference, x))
    assert not torch.equal(masked, logits(tiny_gpt2() if arch == "gpt2" else tiny_llama(), x))

    with peft_model.disable_adapter():
        assert torch.equal(logits(peft_model, x), logits(MODELS[arch](), x))
    before = {n: p.clone() for n, p in peft_model.named_parameters()}
    peft_model.merge_adapter()
    assert torch.equal(logits(peft_model, x), masked)
    peft_model.unmerge_adapter()  # exact: only the zeroed values were kept aside
    assert all(torch.equal(p, before[n]) for n, p in peft_model.named_parameters())
    plain = peft_model.merge_and_unload()
    assert type(plain) is type(reference) and not hasattr(plain, "peft_config")
    assert torch.equal(logits(plain, x), masked)


def test_straight_through_gradient_reaches_scores():
    model, x = tiny_gpt2(), token_rows(4)
    peft_model = get_peft_model(model, WeightMaskConfig())
    tuner = peft_model.base_model
    tuner.start_scores(ratio=0.25, seed=0)
    layer = tuner.mask_layers()["transformer.h.0.mlp.c_fc"]
    keep = layer.keep_mask("default")
    assert int((~keep).sum()) == n_masked(0.25, keep.numel())  # lowest-|score| quarter pruned
    peft_model(x, labels=x).loss.backward()
    grad = layer.weight_mask_scores["default"].grad
    assert grad is not None and torch.isfinite(grad).all()
    # straight-through: pruned weights get a gradient too (a plain product with a 0/1 mask would give none)
    assert grad[~keep].abs().sum() > 0 and grad[keep].abs().sum() > 0
    before = keep.clone()
    with torch.no_grad():
        layer.weight_mask_scores["default"].sub_(1e3 * grad)
    assert not torch.equal(layer.keep_mask("default"), before)  # the mask follows the scores
    tuner.fix_scores()
    assert "default" not in layer.weight_mask_scores and int((~layer.keep_mask("default")).sum()) == 1024


@pytest.mark.parametrize("arch", MODELS)
def test_neuron_mask_zeroes_down_projection_inputs(arch):
    model, x = MODELS[arch](), token_rows(4)
    reference = copy.deepcopy(model)
    peft_model = get_peft_model(model, NeuronMaskConfig())
    tuner = peft_model.base_model
    d_ff = 128 if arch == "gpt2" else 64
    keep = torch.rand(2, d_ff, generator=torch.Generator().manual_seed(0)) > 0.5
    tuner.set_keep_mask(keep)
    assert torch.equal(tuner.keep_mask(), keep)
    with torch.no_grad():
        for i in range(2):
            if arch == "gpt2":  # Conv1D weight (in, out): an input unit is a row
                reference.transformer.h[i].mlp.c_proj.weight.mul_(keep[i][:, None])
            else:  # nn.Linear weight (out, in): an input unit is a column
                reference.model.layers[i].mlp.down_proj.weight.mul_(keep[i][None, :])
    masked = logits(peft_model, x)
    assert torch.allclose(masked, logits(reference, x), atol=1e-6)
    assert not torch.allclose(masked, logits(MODELS[arch](), x), atol=1e-3)
    assert torch.allclose(logits(peft_model.merge_and_unload(), x), masked, atol=1e-6)


def test_neuron_mask_coefficients_are_trainable():
    peft_model = get_peft_model(tiny_llama(), NeuronMaskConfig(trainable_coefficients=True))
    coef = peft_model.base_model.coefficients()
    assert len(coef) == 2 and all(c.requires_grad for c in coef)
    x = token_rows(4)
    peft_model(x, labels=x).loss.backward()
    assert all(c.grad is not None and c.grad.abs().sum() > 0 for c in coef)
    with pytest.raises(ValueError, match="one per masked block"):
        peft_model.base_model.set_keep_mask(torch.ones(3, 64, dtype=torch.bool))


def test_neuron_mask_save_and_load(tmp_path):
    model, x = tiny_llama(), token_rows(4)
    peft_model = get_peft_model(model, NeuronMaskConfig(trainable_coefficients=True))
    tuner = peft_model.base_model
    tuner.set_keep_mask(torch.rand(2, 64, generator=torch.Generator().manual_seed(3)) > 0.3)
    with torch.no_grad():
        for c in tuner.coefficients():
            c.mul_(0.5)
    masked = logits(peft_model, x)
    peft_model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    assert {t.dtype for t in tensors.values()} == {torch.bool, torch.float32}
    loaded = PeftModel.from_pretrained(tiny_llama(), tmp_path)
    assert type(loaded.peft_config["default"]) is NeuronMaskConfig
    assert torch.equal(loaded.base_model.keep_mask(), tuner.keep_mask())
    assert torch.equal(logits(loaded, x), masked)


def test_saved_adapter_is_bit_packed_and_small(tmp_path):
    peft_model = get_peft_model(tiny_gpt2(), WeightMaskConfig())
    random_keep(peft_model.base_model)
    peft_model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    assert tensors and all(t.dtype == torch.uint8 for t in tensors.values())
    edited_fp32 = 4 * sum(peft_model.base_model.masked_count()[1:])
    size = os.path.getsize(tmp_path / "adapter_model.safetensors")
    assert size < 0.05 * edited_fp32, (size, edited_fp32)  # 1/32 of fp32 plus the header


def test_several_adapters_side_by_side(tmp_path):
    model, x = tiny_gpt2(), token_rows(4)
    peft_model = get_peft_model(model, WeightMaskConfig())
    tuner = peft_model.base_model
    a = random_keep(tuner, seed=1)
    peft_model.add_adapter("b", WeightMaskConfig())
    b = random_keep(tuner, seed=2, adapter="b")
    only_a = logits(peft_model, x)
    peft_model.set_adapter("b")
    only_b = logits(peft_model, x)
    assert not torch.equal(only_a, only_b)
    tuner.set_adapter(["default", "b"])  # both active: the masks multiply
    both = logits(peft_model, x)
    reference = tiny_gpt2()
    with torch.no_grad():
        for name in a:
            reference.get_submodule(name).weight.mul_(a[name] & b[name])
    assert torch.equal(both, logits(reference, x))
    # a saved adapter loads next to another one
    peft_model.set_adapter("b")
    peft_model.save_pretrained(tmp_path)  # writes default/ at the root and b/ in a subfolder
    loaded = PeftModel.from_pretrained(tiny_gpt2(), tmp_path)
    loaded.load_adapter(tmp_path / "b", adapter_name="second")
    assert torch.equal(logits(loaded, x), only_a)
    loaded.set_adapter("second")
    assert torch.equal(logits(loaded, x), only_b)


def test_transformers_load_adapter(tmp_path):
    gap = peft_version_gap()
    if gap is not None:  # e.g. transformers 5.24 + peft 0.21: transformers' own adapter methods refuse this peft
        tf_version, peft_installed, peft_required = gap
        pytest.skip(f"transformers {tf_version} requires peft >= {peft_required} for its adapter methods; "
                    f"peft {peft_installed} is installed")
    model, x = tiny_llama(), token_rows(4)
    peft_model = get_peft_model(model, WeightMaskConfig())
    random_keep(peft_model.base_model)
    masked = logits(peft_model, x)
    peft_model.save_pretrained(tmp_path)
    plain = tiny_llama()
    plain.load_adapter(str(tmp_path))
    assert torch.equal(logits(plain, x), masked)
    plain.disable_adapters()
    assert torch.equal(logits(plain, x), logits(tiny_llama(), x))


def test_round_trip_in_a_fresh_process(tmp_path):
    """Save here; load in a new interpreter, where the adapter needs `import hf_memmit` (KeyError without)."""
    model, x = tiny_gpt2(), token_rows(4)
    model.save_pretrained(tmp_path / "base")
    peft_model = get_peft_model(model, WeightMaskConfig())
    random_keep(peft_model.base_model)
    peft_model.save_pretrained(tmp_path / "adapter")
    torch.save({"x": x, "masked": logits(peft_model, x)}, tmp_path / "expected.pt")
    script = textwrap.dedent(f"""
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM
        base = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'base')!r})
        try:
            PeftModel.from_pretrained(base, {str(tmp_path / 'adapter')!r})
            raise SystemExit("loaded without importing hf_memmit")
        except KeyError as err:
            assert "WEIGHT_MASK" in str(err), err
        import hf_memmit.tuners  # registers the mask tuners with peft
        loaded = PeftModel.from_pretrained(base, {str(tmp_path / 'adapter')!r})
        expected = torch.load({str(tmp_path / 'expected.pt')!r})
        with torch.no_grad():
            assert torch.equal(loaded(expected["x"]).logits, expected["masked"])
        print("ok", type(loaded.peft_config["default"]).__name__)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok WeightMaskConfig")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "WEIGHT_MASK"


def test_bad_targets_are_refused():
    with pytest.raises(ValueError, match="tied embeddings"):
        get_peft_model(tiny_gpt2(tie=True), WeightMaskConfig(target_modules=["lm_head"]))
    with pytest.raises(ValueError, match="tied embeddings"):
        get_peft_model(tiny_gpt2(tie=True), WeightMaskConfig(target_modules=["wte"]))
    with pytest.raises(ValueError, match="allowed: torch.nn.Linear"):
        get_peft_model(tiny_gpt2(tie=False), WeightMaskConfig(target_modules=["wte"]))
    untied = get_peft_model(tiny_gpt2(tie=False), WeightMaskConfig(target_modules=["lm_head"]))
    assert untied.base_model.targeted_module_names == ["lm_head"]
    from transformers import OPTConfig, OPTForCausalLM  # fc1/fc2 MLP: not a known model type

    opt = OPTForCausalLM(OPTConfig(vocab_size=14, hidden_size=16, num_hidden_layers=1, ffn_dim=32,
                                   num_attention_heads=2, word_embed_proj_dim=16, max_position_embeddings=32))
    for config in (WeightMaskConfig(), NeuronMaskConfig()):
        with pytest.raises(ValueError, match=r"model type 'opt' has no supported MLP; allowed model types: .*gpt2"):
            get_peft_model(copy.deepcopy(opt), config)
    assert get_peft_model(opt, WeightMaskConfig(target_modules=["fc1", "fc2"])).base_model.targeted_module_names
