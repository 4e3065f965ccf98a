"""The loss-based methods (gradient ascent, GradDiff, NPO, SimNPO) as peft LoRA adapters on tiny random models:
registration, the plain LoRA adapter they leave, the losses against hand-computed values, the NPO reference."""

import copy
import json
import math

import pytest
import torch
from _tiny_models import memorizer_of, one_thread, tiny_gpt2, tiny_llama, token_rows
from datasets import Dataset
from peft import LoraConfig, PeftModel
from peft.tuners.lora import LoraModel

from hf_memmit import GradDiffConfig, GradientAscentConfig, NPOConfig, SimNPOConfig
from hf_memmit.metrics import greedy_match
from hf_memmit.unlearning import Rows, get_method, make_config, method_names, row_losses, unlearn
from hf_memmit.unlearning.loss.npo import npo_losses, reference_log_likelihoods, row_log_likelihoods

LOSS_METHODS = ["gradient_ascent", "grad_diff", "npo", "simnpo"]
MODELS = {"gpt2": tiny_gpt2, "llama": tiny_llama}


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def rows():
    return token_rows(8, seed=1), token_rows(16, seed=2)


@pytest.fixture(scope="module")
def memorizer(rows):
    """A tiny GPT-2 trained until it reproduces its 24 random rows, so forget and retain losses start low."""
    return memorizer_of(torch.cat(rows))


def mean_loss(model, x):
    with torch.no_grad():
        return row_losses(model, x, None).mean().item()


def test_registered_with_their_retain_needs():
    assert method_names()[-4:] == LOSS_METHODS
    assert [get_method(n).needs_retain for n in LOSS_METHODS] == [False, True, True, True]
    assert [type(make_config(n)) for n in LOSS_METHODS] == [GradientAscentConfig, GradDiffConfig, NPOConfig,
                                                            SimNPOConfig]


@pytest.mark.parametrize("config_cls, field, value, allowed", [
    (GradientAscentConfig, "lr", 0.0, r"\(0.0, inf\)"),
    (GradDiffConfig, "retain_weight", -1.0, r"\[0.0, inf\)"),
    (NPOConfig, "beta", 0.0, r"\(0.0, inf\)"),
    (SimNPOConfig, "gamma", -0.5, r"\[0.0, inf\)"),
    (GradientAscentConfig, "max_steps", 0, "integer >= 1"),
    (NPOConfig, "batch_size", 0, "integer >= 1"),
])
def test_config_validation_names_value_and_range(config_cls, field, value, allowed):
    with pytest.raises(ValueError, match=rf"{field}={value!r}.*{allowed}"):
        config_cls(**{field: value})


@pytest.mark.parametrize("arch", list(MODELS))
@pytest.mark.parametrize("name", LOSS_METHODS)
def test_the_adapter_is_plain_lora(name, arch, rows, tmp_path):
    """Save -> plain LoRA adapter_config.json -> PeftModel.from_pretrained on a fresh base, merge_and_unload and
    disable_adapter give the fitted, the same and the base model's logits."""
    forget, retain = rows
    base = MODELS[arch]()
    x = token_rows(4, seed=9)
    with torch.no_grad():
        base_logits = base(x).logits
    config = make_config(name, r=4, lora_alpha=8, lr=1e-2, epochs=2, batch_size=4)
    model = unlearn(base, config, forget, retain if get_method(name).needs_retain else None, progress=False)
    assert isinstance(model.base_model, LoraModel)
    with torch.no_grad():
        fitted = model(x).logits
        with model.disable_adapter():
            torch.testing.assert_close(model(x).logits, base_logits)
    assert not torch.allclose(fitted, base_logits)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and saved["r"] == 4 and saved["lora_alpha"] == 8
    assert not {"method", "lr", "epochs", "beta", "retain_weight"} & set(saved)
    assert type(LoraConfig.from_pretrained(tmp_path)) is LoraConfig
    loaded = PeftModel.from_pretrained(MODELS[arch](), tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, fitted)
        torch.testing.assert_close(model.merge_and_unload()(x).logits, fitted, atol=1e-5, rtol=1e-5)


def test_lora_fields_pass_through(rows):
    forget, _ = rows
    model = unlearn(tiny_llama(), GradientAscentConfig(r=2, target_modules=["down_proj"], max_steps=1, epochs=None),
                    forget, progress=False)
    lora = {n for n, _ in model.named_parameters() if "lora_" in n}
    assert lora and all("down_proj" in n for n in lora)
    assert all(p.shape[0] == 2 for n, p in model.named_parameters() if "lora_A" in n)


@pytest.mark.parametrize("name", LOSS_METHODS)
def test_forget_loss_rises_more_than_retain_loss(name, rows, memorizer):
    forget, retain = rows
    base = memorizer
    before_f, before_r = mean_loss(base, forget), mean_loss(base, retain)
    result = unlearn(copy.deepcopy(base), make_config(name, lr=3e-3, epochs=10, batch_size=4), forget,
                     retain if get_method(name).needs_retain else None, progress=False)
    rise_f, rise_r = mean_loss(result, forget) - before_f, mean_loss(result, retain) - before_r
    assert rise_f > 0 and rise_f > rise_r, (rise_f, rise_r)


def test_retain_term_holds_the_retain_loss(rows, memorizer):
    """GradDiff's retain term: the same ascent with it leaves the retain loss lower than gradient ascent does."""
    forget, retain = rows
    settings = {"lr": 3e-3, "epochs": 10, "batch_size": 4}
    ga = unlearn(copy.deepcopy(memorizer), GradientAscentConfig(**settings), forget, progress=False)
    gd = unlearn(copy.deepcopy(memorizer), GradDiffConfig(retain_weight=2.0, **settings), forget, retain,
                 progress=False)
    assert mean_loss(gd, retain) < mean_loss(ga, retain)


def test_npo_loss_against_hand_values():
    """At log-ratio 0 the term is (2 / beta) log 2 and its gradient is 2 sigmoid(0) / n = 1 / n per row (gradient
    ascent's on the summed log-likelihood); at large positive log-ratios it grows like 2 * log-ratio."""
    beta = 0.1
    x = torch.zeros(4, requires_grad=True)
    loss = npo_losses(x, beta).mean()
    assert math.isclose(loss.item(), 2 / beta * math.log(2), rel_tol=1e-6)
    loss.backward()
    torch.testing.assert_close(x.grad, torch.full((4,), 0.25))
    big = torch.tensor([500.0])
    assert math.isclose(npo_losses(big, beta).item(), -(2 / beta) * math.log(1 / (1 + math.exp(beta * 500))),
                        rel_tol=1e-6)


def test_npo_reference_is_the_base_with_the_adapter_disabled(rows):
    forget, _ = rows
    base = tiny_gpt2()
    with torch.no_grad():
        expected = row_log_likelihoods(base, forget, None)
        torch.testing.assert_close(expected, -row_losses(base, forget, None) * (forget.shape[1] - 1))
    model = unlearn(base, GradientAscentConfig(lr=1e-2, epochs=3, batch_size=4), forget, progress=False)
    with torch.no_grad():
        assert not torch.allclose(row_log_likelihoods(model, forget, None), expected)
    torch.testing.assert_close(reference_log_likelihoods(model, Rows(forget), 3, progress=False), expected)


def test_log_likelihood_leaves_padding_out():
    model = tiny_gpt2()
    x = token_rows(2, length=10, seed=4)
    mask = torch.ones_like(x)
    mask[:, 6:] = 0
    with torch.no_grad():
        padded = row_log_likelihoods(model, x, mask)
        torch.testing.assert_close(padded, row_log_likelihoods(model, x[:, :6], None))


def test_bad_inputs_are_clear_errors(rows):
    forget, retain = rows
    with pytest.raises(ValueError, match="method 'npo' needs a retain set"):
        unlearn(tiny_gpt2(), NPOConfig(), forget, progress=False)
    with pytest.raises(ValueError, match="forget and retain overlap"):
        unlearn(tiny_gpt2(), GradDiffConfig(), forget, torch.cat([retain, forget[:1]]), progress=False)
    with pytest.raises(ValueError, match="epochs=None schedules by optimizer steps"):
        GradientAscentConfig(epochs=None)
    with pytest.raises(ValueError, match="matches no module"):
        unlearn(tiny_gpt2(), GradientAscentConfig(target_modules=["nope"]), forget, progress=False)


def test_stops_when_the_forget_rows_are_clean(rows, memorizer):
    """With forget_check_every=1 fitting ends at the first step after which no forget row is extractable."""
    forget, _ = rows
    data = Dataset.from_dict({"input_ids": forget.tolist(), "prompt_length": [8] * len(forget)})
    assert greedy_match(memorizer, forget[:, :8], forget[:, 8:]).exact.sum() >= 4
    result = unlearn(copy.deepcopy(memorizer), GradientAscentConfig(lr=1e-2, epochs=None, max_steps=50, forget_check_every=1,
                                                 batch_size=8), data, progress=False)
    log = result.unlearning_log
    assert log["stopped_at"] is not None and log["checks"][-1] == (log["stopped_at"], 0)
    assert all(left > 0 for _, left in log["checks"][:-1])


def test_own_model_defaults_schedule_by_steps_and_stop_when_clean():
    from hf_memmit.own_model import config_for

    for name in LOSS_METHODS:
        config = config_for(name)
        assert (config.epochs, config.max_steps, config.forget_check_every, config.forget_check_rows,
                config.batch_size, config.lr) == (None, 300, 1, 64, 8, 1e-3), name
    assert config_for("npo", {"lr": 1e-4}).lr == 1e-4
    assert config_for("balanced_subnet").ratio == 0.01


def test_an_option_the_method_lacks_is_a_clear_error():
    with pytest.raises(ValueError, match="npo: unknown option.s. ratio; allowed: .*beta.*lora_alpha"):
        make_config("npo", ratio=0.1)
