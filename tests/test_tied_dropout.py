"""Tied-dropout core and example-tied dropout: hash, masks, gradients, eval modes, generate, the ETD Trainer."""

import copy
import json
import subprocess
import sys

import pytest
import torch
from _tiny_models import one_thread, tiny_gpt2, tiny_llama, token_rows
from transformers.pytorch_utils import Conv1D

from hf_memmit.trainers.tied_dropout import (
    TiedDropoutConfig,
    attach_tied_dropout,
    check_keys,
    general_units,
    key_of,
    key_units,
    tied_dropout_mode,
)
from hf_memmit.trainers.tied_dropout.example_tied import (
    ExampleKeyCollator,
    ExampleTiedDropoutConfig,
    ExampleTiedDropoutTrainer,
    example_keys,
)

MODELS = {"gpt2": tiny_gpt2, "llama": tiny_llama}


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


# ---- hash -------------------------------------------------------------------------------------------------

def test_hash_is_deterministic_across_processes():
    keys = [1, 2, 3, 2**62, key_of("wiki-000007")]
    here = {"units": key_units(keys, 97, 0.3, salt=5).tolist(), "key": key_of("wiki-000007")}
    code = ("import json; from hf_memmit.trainers.tied_dropout import key_of, key_units; "
            f"print(json.dumps({{'units': key_units({keys}, 97, 0.3, salt=5).tolist(), 'key': key_of('wiki-000007')}}))")
    there = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                      check=True).stdout)
    assert here == there
    assert torch.equal(key_units(keys, 97, 0.3, salt=5), key_units(keys, 97, 0.3, salt=5))
    assert not torch.equal(key_units(keys, 97, 0.3, salt=5), key_units(keys, 97, 0.3, salt=6))


def test_hash_density_and_independence():
    units = key_units(torch.arange(1, 3001), 461, 0.3)  # SmolLM2-135M's sink pool at g = 0.7
    assert abs(units.float().mean().item() - 0.3) < 0.005
    per_key = units.float().mean(1)
    assert 0.2 < per_key.min() and per_key.max() < 0.4
    overlap = (units[:-1] & units[1:]).float().mean().item()  # neighbouring keys: independent draws
    assert abs(overlap - 0.09) < 0.01
    assert key_units([7], 50, 1.0).all()


def test_nonpositive_keys_rejected():
    for bad in (0, -3):
        with pytest.raises(ValueError, match=str(bad)):
            key_units([1, bad], 10, 0.3)
        with pytest.raises(ValueError, match=str(bad)):
            check_keys(torch.tensor([bad]))
    assert key_of(0) > 0 and key_of("") > 0 and key_of(0) == key_of("0")


def test_general_units_layouts():
    first = general_units(10, 0.7)
    assert first[:7].all() and not first[7:].any()
    hashed = general_units(100, 0.7, "hashed", salt=3)
    assert hashed.sum() == 70 and not torch.equal(hashed, general_units(100, 0.7))


# ---- hooks on GPT-2 (Conv1D) and Llama (Linear) -------------------------------------------------------------

def _down_weight_rows(model):
    """(module, per-unit weight slices) of every down projection: Conv1D weight (in, out), Linear (out, in)."""
    for name, m in model.named_modules():
        if name.endswith(("mlp.c_proj", "mlp.down_proj")):
            yield name, m


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_masked_units_get_exactly_zero_gradient(arch):
    model = MODELS[arch]().train()
    td = attach_tied_dropout(model, TiedDropoutConfig(p_gen=0.5, p_mem=0.3))
    keys = torch.tensor([11, 11, 11])
    with td.keys(keys):
        model(token_rows(3, 12), labels=token_rows(3, 12)).loss.backward()
    off = ~td.unit_mask([11])[0]
    assert 0 < off.sum() < td.n_units
    for name, m in _down_weight_rows(model):
        mlp = model.get_submodule(name.rsplit(".", 1)[0])
        if arch == "gpt2":
            grads = [m.weight.grad[off], mlp.c_fc.weight.grad[:, off], mlp.c_fc.bias.grad[off]]
            live = m.weight.grad[~off]
        else:
            grads = [m.weight.grad[:, off], mlp.gate_proj.weight.grad[off], mlp.up_proj.weight.grad[off]]
            live = m.weight.grad[:, ~off]
        for g in grads:
            assert torch.count_nonzero(g) == 0
        assert live.abs().sum() > 0


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("rescale", ["none", "code", "mass"])
def test_drop_mode_equals_general_only_model(arch, rescale):
    model = MODELS[arch]()
    plain = copy.deepcopy(model)
    cfg = TiedDropoutConfig(p_gen=0.6, p_mem=0.3, rescale=rescale)
    td = attach_tied_dropout(model, cfg)
    factor = {"none": 1.0, "code": 0.9 / 0.6, "mass": (0.6 + 0.4 * 0.3) / 0.6}[rescale]
    with torch.no_grad():
        for _, m in _down_weight_rows(plain):  # zero the pool units' down-projection inputs, scale the rest
            w = m.weight if isinstance(m, Conv1D) else m.weight.T
            w[~td.general] = 0
            w[td.general] *= factor
    x = token_rows(4, 12)
    with torch.no_grad(), td.mode("drop"):
        assert torch.allclose(model(x).logits, plain(x).logits, atol=1e-5)
    with torch.no_grad():  # eval_mode "drop" is the default outside a mode block
        assert torch.allclose(model(x).logits, plain(x).logits, atol=1e-5)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("mode", ["drop", "all"])
def test_merge_bakes_a_mode_into_a_plain_model(arch, mode, tmp_path):
    model = MODELS[arch]()
    td = attach_tied_dropout(model, TiedDropoutConfig(p_gen=0.6, p_mem=0.3, rescale="code"))
    x = token_rows(2, 10)
    with torch.no_grad(), td.mode(mode, exclude=[5] if mode == "all" else ()):
        want = model(x).logits
    td.merge(mode, exclude=[5] if mode == "all" else ())
    model.save_pretrained(tmp_path)
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert not hasattr(plain.config, "tied_dropout")
    with torch.no_grad():
        assert torch.allclose(plain(x).logits, want, atol=1e-5)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_all_ones_mask_is_bit_identical_to_unhooked(arch):
    model = MODELS[arch]()
    plain = copy.deepcopy(model)
    td = attach_tied_dropout(model, TiedDropoutConfig(p_gen=0.5, p_mem=1.0))  # every key owns the whole pool
    x = token_rows(3, 12)
    with torch.no_grad():
        want = plain(x).logits
        with td.mode("all"):
            assert torch.equal(model(x).logits, want)
        with td.mode("seq", keys=[3, 4, 5]):
            assert torch.equal(model(x).logits, want)
        model.train()
        plain.train()
        with td.keys([3, 4, 5]):
            assert torch.equal(model(x).logits, plain(x).logits)


def test_training_forward_without_keys_raises():
    model = tiny_gpt2().train()
    attach_tied_dropout(model, TiedDropoutConfig())
    with pytest.raises(RuntimeError, match="needs the keys"):
        model(token_rows(2, 8))


def test_per_token_keys_mask_each_document_separately():
    model = tiny_gpt2()
    td = attach_tied_dropout(model, TiedDropoutConfig(p_gen=0.5, p_mem=0.3, eval_mode="seq"))
    x = token_rows(2, 12)
    packed = torch.tensor([[5] * 6 + [9] * 6, [9] * 12])
    with torch.no_grad():
        with td.keys(packed):
            out = model(x).logits
        with td.keys(torch.tensor([5, 9])):
            whole = model(x).logits
    assert torch.equal(out[0, :6], whole[0, :6])  # causal: doc-5 positions only see doc-5 tokens
    assert not torch.allclose(out[0, 6:], whole[0, 6:])
    assert torch.equal(out[1], whole[1])


def test_exclude_zeroes_the_excluded_keys_units():
    model = tiny_gpt2()
    td = attach_tied_dropout(model, TiedDropoutConfig(p_gen=0.5, p_mem=0.3))
    x = token_rows(1, 10)
    with torch.no_grad():
        with td.mode("seq", keys=[21]):
            own = model(x).logits
        with td.mode("seq", keys=[21], exclude=[21]):
            excluded = model(x).logits
        with td.mode("drop", rescale="none"):
            dropped = model(x).logits
        with td.mode("all", exclude=[21]):
            all_minus = model(x).logits
        with td.mode("all"):
            all_on = model(x).logits
    assert torch.allclose(excluded, dropped, atol=1e-6)  # own units minus own units = general only
    assert not torch.allclose(own, dropped)
    assert not torch.allclose(all_minus, all_on)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_generate_with_kv_cache_equals_without(arch):
    model = MODELS[arch]()
    model.generation_config.pad_token_id = 0
    attach_tied_dropout(model, TiedDropoutConfig(p_gen=0.5, p_mem=0.3))
    prompt = token_rows(2, 6)
    kw = {"max_new_tokens": 10, "do_sample": False, "eos_token_id": None, "attention_mask": torch.ones_like(prompt)}
    outs = {}
    for mode, extra in [("all", {}), ("drop", {"rescale": "code"}), ("seq", {"keys": [4, 8]})]:
        with tied_dropout_mode(model, mode, **extra):
            cached = model.generate(prompt, use_cache=True, **kw)
            plain = model.generate(prompt, use_cache=False, **kw)
        assert torch.equal(cached, plain), mode
        outs[mode] = cached
    assert not (torch.equal(outs["all"], outs["drop"]) and torch.equal(outs["all"], outs["seq"]))


def test_config_rides_in_model_config_and_reattaches(tmp_path):
    model = tiny_gpt2()
    attach_tied_dropout(model, TiedDropoutConfig(p_gen=0.6, p_mem=0.2, salt=4))
    model.save_pretrained(tmp_path)
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    td = attach_tied_dropout(loaded)
    assert td.config == TiedDropoutConfig(p_gen=0.6, p_mem=0.2, salt=4)
    x = token_rows(2, 8)
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)


# ---- example-tied dropout ---------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [("p_gen", 0.0), ("p_gen", 1.5), ("p_mem", 0.0), ("p_mem", -0.2),
                                         ("p_mem", 2)])
def test_etd_config_rejects_p_outside_unit_interval(field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        ExampleTiedDropoutConfig(**{field: value})
    with pytest.raises(ValueError, match="rescale"):
        ExampleTiedDropoutConfig(rescale="half")


def _etd_rows(n=8, length=12, with_ids=True):
    from datasets import Dataset

    rows = {"input_ids": token_rows(n, length).tolist(), "task": ["math"] * n}
    if with_ids:
        rows["id"] = [f"row-{i}" for i in range(n)]
    return Dataset.from_dict(rows)


def _collate(features):
    ids = torch.tensor([f["input_ids"] for f in features])
    return {"input_ids": ids, "labels": ids.clone()}


def _args(tmp_path, **kw):
    from transformers import TrainingArguments

    base = {"output_dir": str(tmp_path), "per_device_train_batch_size": 4, "num_train_epochs": 1, "learning_rate": 1e-2,
                "report_to": "none", "save_strategy": "no", "logging_steps": 1, "use_cpu": True, "seed": 0, "disable_tqdm": True,
                "dataloader_num_workers": 0}
    return TrainingArguments(**{**base, **kw})


def test_etd_trainer_missing_ids_is_a_clear_error(tmp_path):
    trainer = ExampleTiedDropoutTrainer(model=tiny_gpt2().train(), args=_args(tmp_path),
                                        train_dataset=_etd_rows(with_ids=False), data_collator=_collate,
                                        method_config=ExampleTiedDropoutConfig(p_gen=0.5, p_mem=0.3))
    with pytest.raises(ValueError, match="'id' is missing"):
        trainer.train()


def test_etd_trainer_same_id_same_mask_across_epochs(tmp_path):
    model = tiny_gpt2().train()
    trainer = ExampleTiedDropoutTrainer(model=model, args=_args(tmp_path, num_train_epochs=3),
                                        train_dataset=_etd_rows(), data_collator=_collate,
                                        method_config=ExampleTiedDropoutConfig(p_gen=0.5, p_mem=0.3))
    seen = []
    set_keys = trainer.tied_dropout.set_keys
    trainer.tied_dropout.set_keys = lambda k: (seen.append(k.tolist()) if k is not None else None, set_keys(k))
    trainer.train()
    assert trainer.args.remove_unused_columns is False  # the id column had to survive Trainer's pruning
    batches = [set(b) for b in seen]
    assert len(batches) == 6
    epochs = [batches[0] | batches[1], batches[2] | batches[3], batches[4] | batches[5]]
    want = set(example_keys([f"row-{i}" for i in range(8)]).tolist())
    assert epochs[0] == epochs[1] == epochs[2] == want  # each id maps to one key, so one mask, every epoch
    # after training, eval mode drops the memorization units: equal to an explicit drop block
    model.eval()
    x = token_rows(2, 8)
    with torch.no_grad():
        out = model(x).logits
        with tied_dropout_mode(model, "drop", rescale="code"):
            assert torch.equal(out, model(x).logits)
    metrics = trainer.evaluate(_etd_rows(4, with_ids=False))  # evaluation needs no ids
    assert metrics["eval_loss"] > 0


def test_etd_collator_keeps_ids_and_filters_other_columns_like_trainer(tmp_path):
    seen = []
    trainer = ExampleTiedDropoutTrainer(model=tiny_gpt2(), args=_args(tmp_path), train_dataset=_etd_rows(),
                                        data_collator=lambda feats: seen.extend(feats) or {"x": 1})
    batch = trainer.data_collator([{"input_ids": [1], "id": "a", "task": "math"},
                                   {"input_ids": [2], "id": "b", "task": "x"}])
    assert seen == [{"input_ids": [1]}, {"input_ids": [2]}]  # "task" filtered, as remove_unused_columns would
    assert batch["tied_keys"].tolist() == [key_of("a"), key_of("b")]
    plain = ExampleKeyCollator(lambda feats: {"n": len(feats)})
    assert "tied_keys" not in plain([{"input_ids": [1]}])  # no ids: no keys (training then raises)


def test_etd_gradient_accumulation_equals_larger_batch(tmp_path):
    weights = []
    for bs, ga in [(4, 1), (2, 2)]:
        model = tiny_gpt2(seed=1).train()
        trainer = ExampleTiedDropoutTrainer(model=model, args=_args(tmp_path / f"{bs}", max_steps=1,
                                                                    per_device_train_batch_size=bs,
                                                                    gradient_accumulation_steps=ga,
                                                                    train_sampling_strategy="sequential",
                                                                    optim="sgd"),
                                            train_dataset=_etd_rows(4), data_collator=_collate,
                                            method_config=ExampleTiedDropoutConfig(p_gen=0.5, p_mem=0.3))
        trainer.train()
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(weights[0], weights[1], atol=1e-6)  # SGD: Adam would amplify float noise in ~0 grads

