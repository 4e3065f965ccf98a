"""`unlearn` and the six weight-level methods on tiny random models: configs, counts, top-k, errors, results."""

import copy
import dataclasses
import json

import pytest
import torch
from _tiny_models import memorizer_of, one_thread, tiny_gpt2, tiny_llama, token_rows
from datasets import Dataset
from peft import PeftConfig, PeftModel
from safetensors.torch import load_file

from hf_memmit.tuners import WeightMaskConfig, n_masked
from hf_memmit.unlearning import (
    BalancedSubnetConfig,
    DurableAggConfig,
    DurableConfig,
    GreedyConfig,
    SecondOrderUnlearningConfig,
    SubnetConfig,
    get_method,
    make_config,
    method_names,
    row_losses,
    unlearn,
)

# small settings so every method runs in about a second
FAST = {
    "greedy": {"weights_per_step": 50, "batch_size": 16},
    "sou": {"num_grads": 8, "block_size": 16},
    "durable": {},
    "durable_agg": {},
    "subnet": {"epochs": 2, "batch_size": 8},
    "balanced_subnet": {"epochs": 1, "batch_size": 16},
}
JOINT = {"greedy", "durable_agg"}


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def rows():
    return token_rows(8, seed=1), token_rows(32, seed=2)


@pytest.fixture(scope="module")
def memorizer(rows):
    """A tiny GPT-2 trained until it reproduces its 40 random rows, so forget and retain losses start low."""
    return memorizer_of(torch.cat(rows))


def masked_counts(peft_model, adapter="default"):
    return {n: int((~k).sum()) for n, k in peft_model.base_model.keep_masks(adapter).items()}


def mean_loss(model, x):
    with torch.no_grad():
        return row_losses(model, x, None).mean().item()


def test_registry_names_configs_and_fit_functions():
    assert method_names() == ["greedy", "sou", "durable", "durable_agg", "subnet", "balanced_subnet",
                              "zero", "act", "slim", "hc", "ig", "gradient_ascent", "grad_diff", "npo", "simnpo"]
    for name in method_names():
        method = get_method(name)
        assert method.config_class.method == name and make_config(name).method == name
        assert get_method(method.config_class()) is method
    assert get_method("greedy").needs_retain and get_method("balanced_subnet").needs_retain
    with pytest.raises(ValueError, match="unknown unlearning method 'nope'; allowed: greedy, sou"):
        get_method("nope")
    with pytest.raises(ValueError, match="allowed: greedy"):
        unlearn(tiny_gpt2(), WeightMaskConfig(), token_rows(2))


@pytest.mark.parametrize("config_cls, field, value, allowed", [
    (GreedyConfig, "ratio", 0.0, r"\(0.0, 1.0\)"),
    (SecondOrderUnlearningConfig, "ratio", 1.0, r"\(0.0, 1.0\)"),
    (DurableConfig, "ratio", -0.1, r"\(0.0, 1.0\)"),
    (DurableAggConfig, "ratio", 1.5, r"\(0.0, 1.0\)"),
    (SubnetConfig, "ratio", 2, r"\(0.0, 1.0\)"),
    (BalancedSubnetConfig, "loss_weight", 1.2, r"\[0.0, 1.0\]"),
    (BalancedSubnetConfig, "balance", "mean", "'paper_sign', 'weighted'"),
    (SubnetConfig, "epochs", 0, "integer >= 1"),
    (SubnetConfig, "lr", 0.0, r"\(0.0, inf\)"),
    (SubnetConfig, "momentum", 1.0, r"\[0.0, 1.0\)"),
    (GreedyConfig, "weights_per_step", 0, "integer >= 1"),
    (GreedyConfig, "batch_size", 0, "integer >= 1"),
    (SecondOrderUnlearningConfig, "damping", 0.0, r"\(0.0, inf\)"),
    (SecondOrderUnlearningConfig, "block_size", 0, "integer >= 1"),
    (DurableConfig, "method", "subnet", "allowed: 'durable'"),
])
def test_config_validation_names_value_and_range(config_cls, field, value, allowed):
    with pytest.raises(ValueError, match=rf"{field}={value!r}.*allowed.*{allowed}|{field}={value!r}.*{allowed}"):
        config_cls(**{field: value})


def test_paper_defaults():
    sub = SubnetConfig()
    assert (sub.lr, sub.momentum, sub.weight_decay, sub.batch_size, sub.epochs) == (0.1, 0.9, 5e-4, 64, 5)
    assert (BalancedSubnetConfig().balance, BalancedSubnetConfig().loss_weight) == ("paper_sign", 0.5)
    sou = SecondOrderUnlearningConfig()
    assert (sou.block_size, sou.damping, sou.num_grads) == (50, 1e-7, 256)
    assert GreedyConfig().weights_per_step == 1


@pytest.mark.parametrize("name", list(FAST))
def test_config_round_trips_through_adapter_config_json(name, tmp_path):
    config = make_config(name, ratio=0.123, target_modules=["c_fc"], seed=3)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "WEIGHT_MASK" and saved["method"] == name and saved["ratio"] == 0.123
    loaded = PeftConfig.from_pretrained(tmp_path)  # peft builds WEIGHT_MASK's class: the method class comes back
    assert type(loaded) is type(config) and loaded.to_dict() == config.to_dict()
    assert type(WeightMaskConfig(**saved)) is type(config)
    assert type(copy.deepcopy(config)) is type(config)


def test_greedy_masks_exactly_the_requested_count(rows):
    forget, retain = rows
    expected = n_masked(0.005, 16384)  # 81 of the 4 * 32 * 128 MLP weights, jointly
    for per_step in (1, 7):
        model = unlearn(tiny_gpt2(), GreedyConfig(ratio=0.005, weights_per_step=per_step, batch_size=16),
                        forget, retain, progress=False)
        assert model.base_model.masked_count() == (expected, 16384)


def _forget_grad_magnitudes(forget):
    """|d mean-row-CE / dW| of the MLP weights on one batch holding every forget row, computed independently."""
    model = tiny_gpt2()
    row_losses(model, forget, None).mean().backward()
    return {f"transformer.h.{i}.mlp.{m}": getattr(model.transformer.h[i].mlp, m).weight.grad.abs()
            for i in range(2) for m in ("c_fc", "c_proj")}


def test_durable_top_k_per_tensor_and_durable_agg_jointly(rows):
    forget, _ = rows
    grads = _forget_grad_magnitudes(forget)
    ratio = 0.02
    per_tensor = unlearn(tiny_gpt2(), DurableConfig(ratio=ratio, batch_size=64), forget, progress=False)
    for name, keep in per_tensor.base_model.keep_masks().items():
        k = n_masked(ratio, keep.numel())
        assert int((~keep).sum()) == k
        top = set(torch.topk(grads[name].reshape(-1), k).indices.tolist())
        assert set((~keep).reshape(-1).nonzero().squeeze(1).tolist()) == top

    joint = unlearn(tiny_gpt2(), DurableAggConfig(ratio=ratio, batch_size=64), forget, progress=False)
    keep = joint.base_model.keep_masks()
    assert sum(int((~k).sum()) for k in keep.values()) == n_masked(ratio, 16384)
    flat_grad = torch.cat([grads[n].reshape(-1) for n in keep])
    flat_drop = torch.cat([(~k).reshape(-1) for k in keep.values()])
    assert flat_grad[flat_drop].min() >= flat_grad[~flat_drop].max()
    # joint selection does not spread evenly: some tensor loses more than its per-tensor share
    assert masked_counts(joint) != masked_counts(per_tensor)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("name", list(FAST))
def test_ratio_is_the_masked_fraction_for_every_method(name, arch, rows):
    forget, retain = rows
    ratio = 0.03
    model = tiny_gpt2() if arch == "gpt2" else tiny_llama()
    result = unlearn(model, make_config(name, ratio=ratio, **FAST[name]), forget,
                     retain if get_method(name).needs_retain else None, progress=False)
    counts = masked_counts(result)
    sizes = {n: k.numel() for n, k in result.base_model.keep_masks().items()}
    total = sum(sizes.values())
    if name in JOINT:
        assert sum(counts.values()) == n_masked(ratio, total)
    else:
        assert counts == {n: n_masked(ratio, s) for n, s in sizes.items()}
    assert abs(sum(counts.values()) / total - ratio) < 1e-3


# Not per-tensor Durable: on this memorizer its masks are not selective (ratio 0.02: forget loss +0.099, retain
# +0.172; a mask chosen by 8 retain rows' gradients raises the forget loss more, +0.486), so which side rises more
# came down to float rounding and differed between machines. Its top-k selection is tested above.
@pytest.mark.parametrize("name, extra", [
    ("balanced_subnet", {}), ("balanced_subnet", {"balance": "weighted", "loss_weight": 0.7}),
    ("subnet", {}), ("durable_agg", {}), ("sou", {}), ("greedy", {}),
])
def test_forget_loss_rises_more_than_retain_loss(name, extra, rows, memorizer):
    forget, retain = rows
    before_f, before_r = mean_loss(memorizer, forget), mean_loss(memorizer, retain)
    settings = {**FAST[name], "ratio": 0.02, **extra}
    if name.endswith("subnet"):
        settings.update(epochs=10, batch_size=8)
    result = unlearn(copy.deepcopy(memorizer), make_config(name, **settings), forget,
                     retain if get_method(name).needs_retain else None, progress=False)
    rise_f, rise_r = mean_loss(result, forget) - before_f, mean_loss(result, retain) - before_r
    assert rise_f > 0 and rise_f > rise_r, (rise_f, rise_r)


@pytest.mark.parametrize("balance", ["paper_sign", "weighted"])
def test_loss_weight_trades_forget_against_retain(balance, rows, memorizer):
    """alpha = 1 is pure ascent on forget rows, alpha = 0 pure descent on retain rows."""
    forget, retain = rows
    rises = {}
    for alpha in (0.0, 1.0):
        config = BalancedSubnetConfig(ratio=0.02, epochs=10, batch_size=8, loss_weight=alpha, balance=balance)
        result = unlearn(copy.deepcopy(memorizer), config, forget, retain, progress=False)
        rises[alpha] = [mean_loss(result, x) - mean_loss(memorizer, x) for x in (forget, retain)]
    assert rises[1.0][0] > rises[0.0][0] and rises[0.0][1] < rises[1.0][1], rises


def test_unlearn_returns_a_normal_peft_model(rows, tmp_path):
    forget, retain = rows
    config = BalancedSubnetConfig(ratio=0.1, epochs=1, loss_weight=0.7, balance="weighted")
    model = unlearn(tiny_gpt2(), config, Dataset.from_dict({"input_ids": forget.tolist()}),
                    Dataset.from_dict({"input_ids": retain.tolist()}), batch_size=16, progress=False)
    assert isinstance(model, PeftModel) and config.batch_size == 64  # the caller's config is not modified
    x = token_rows(4, seed=9)
    with torch.no_grad():
        masked = model(x).logits
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert {k: saved[k] for k in ("peft_type", "method", "ratio", "loss_weight", "balance", "epochs", "batch_size",
                                 "lr")} == {"peft_type": "WEIGHT_MASK", "method": "balanced_subnet", "ratio": 0.1,
                                            "loss_weight": 0.7, "balance": "weighted", "epochs": 1,
                                            "batch_size": 16, "lr": 0.1}
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    assert all(t.dtype == torch.uint8 for t in tensors.values())  # fitted mask bits, no float scores
    assert not any("scores" in k for k in tensors)
    loaded = PeftModel.from_pretrained(tiny_gpt2(), tmp_path)
    assert type(loaded.peft_config["default"]) is BalancedSubnetConfig
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, masked)
        assert torch.equal(model.merge_and_unload()(x).logits, masked)


def test_a_second_adapter_side_by_side(rows):
    forget, _ = rows
    first = unlearn(tiny_gpt2(), DurableConfig(ratio=0.05), forget, progress=False)
    both = unlearn(first, SubnetConfig(ratio=0.05, epochs=1), forget, adapter_name="subnet", progress=False)
    assert both is first and set(both.peft_config) == {"default", "subnet"}
    assert type(both.peft_config["subnet"]) is SubnetConfig and both.active_adapters == ["subnet"]
    first_masks, second_masks = both.base_model.keep_masks("default"), both.base_model.keep_masks("subnet")
    assert any(not torch.equal(first_masks[n], second_masks[n]) for n in first_masks)
    with pytest.raises(ValueError, match="adapter_name='subnet' already exists"):
        unlearn(both, SubnetConfig(), forget, adapter_name="subnet", progress=False)


def test_max_steps_caps_the_mask_training(rows):
    forget, retain = rows
    model, calls = tiny_gpt2(), []
    model.register_forward_hook(lambda *args: calls.append(1))
    unlearn(model, BalancedSubnetConfig(epochs=5, batch_size=8, max_steps=3), forget, retain, progress=False)
    assert len(calls) == 3  # 5 epochs of 5 batches without the cap


def test_padding_is_left_out_of_the_loss():
    model, x = tiny_gpt2(), token_rows(2, length=10)
    padded = torch.cat([x, torch.zeros(2, 6, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(2, 10), torch.zeros(2, 6)], dim=1).long()
    with torch.no_grad():
        assert torch.allclose(row_losses(model, padded, mask), row_losses(model, x, None), atol=1e-5)


def test_bad_inputs_are_clear_errors(rows):
    forget, retain = rows
    durable = DurableConfig(ratio=0.05)
    with pytest.raises(ValueError, match="forget set is empty"):
        unlearn(tiny_gpt2(), durable, torch.zeros(0, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="forget set is empty"):
        unlearn(tiny_gpt2(), durable, Dataset.from_dict({"input_ids": []}))
    with pytest.raises(ValueError, match="overlap in 1 row.*id 'b'.*allowed: disjoint"):
        unlearn(tiny_gpt2(), durable, Dataset.from_dict({"input_ids": forget[:2].tolist(), "id": ["a", "b"]}),
                Dataset.from_dict({"input_ids": retain[:2].tolist(), "id": ["b", "c"]}))
    with pytest.raises(ValueError, match="overlap in 1 row.*identical input_ids row"):
        unlearn(tiny_gpt2(), BalancedSubnetConfig(), forget, torch.cat([retain, forget[3:4]]))
    with pytest.raises(ValueError, match="needs a retain set"):
        unlearn(tiny_gpt2(), GreedyConfig(), forget)
    with pytest.raises(ValueError, match=r"target_modules=\{'nope'\} matches no module.*c_fc"):
        unlearn(tiny_gpt2(), DurableConfig(target_modules=["nope"]), forget)
    with pytest.raises(ValueError, match="'lm_head' shares its weight with 'transformer.wte.weight'"):
        unlearn(tiny_gpt2(tie=True), DurableConfig(target_modules=["lm_head"]), forget)
    from transformers import OPTConfig, OPTForCausalLM

    opt = OPTForCausalLM(OPTConfig(vocab_size=14, hidden_size=16, num_hidden_layers=1, ffn_dim=32,
                                   num_attention_heads=2, word_embed_proj_dim=16, max_position_embeddings=32))
    with pytest.raises(ValueError, match="model type 'opt' has no supported MLP"):
        unlearn(opt, durable, forget)
    with pytest.raises(ValueError, match="rows of lengths \\[3, 4\\]"):
        unlearn(tiny_gpt2(), durable, Dataset.from_dict({"input_ids": [[1, 2, 3], [1, 2, 3, 4]]}))
    with pytest.raises(ValueError, match="allowed: a datasets.Dataset"):
        unlearn(tiny_gpt2(), durable, [[1, 2, 3]])
    with pytest.raises(ValueError, match="batch_size=0"):
        unlearn(tiny_gpt2(), durable, forget, batch_size=0)
    with pytest.warns(UserWarning, match="uses only the forget set"):
        unlearn(tiny_gpt2(), durable, forget, retain, progress=False)
    with pytest.warns(UserWarning, match="masks 0 of"):
        unlearn(tiny_gpt2(), DurableConfig(ratio=1e-5), forget, progress=False)


def test_config_fields_are_json_serializable():
    for name in method_names():
        config = make_config(name, target_modules=["c_fc"])
        text = json.dumps({f.name: (sorted(v) if isinstance(v := getattr(config, f.name), set) else v)
                           for f in dataclasses.fields(config)
                           if f.init and not dataclasses.is_dataclass(getattr(config, f.name))})  # LoRA's runtime
        rebuilt = make_config(name, **json.loads(text))  # every field survives the JSON round trip
        assert dataclasses.asdict(rebuilt) == dataclasses.asdict(config), name
