"""The five neuron-level methods (Zero, Act, Slim, HC, IG) on tiny random GPT-2 (Conv1D) and Llama (gated MLP):
scores checked against independent computations, selection rules, training, save/load/merge."""

import contextlib
import copy
import json
import warnings

import pytest
import torch
from _tiny_models import one_thread, tiny_gpt2, tiny_llama, token_rows
from datasets import Dataset
from peft import PeftConfig, PeftModel

from hf_memmit.tuners import NeuronMaskConfig
from hf_memmit.unlearning import (
    ActConfig,
    HardConcreteConfig,
    IntegratedGradientsConfig,
    SlimConfig,
    ZeroConfig,
    get_method,
    make_config,
    method_names,
    neuron_scores,
    unlearn,
)

NEURON = ["zero", "act", "slim", "hc", "ig"]
FAST = {"zero": {"units_per_pass": 32}, "act": {}, "slim": {"epochs": 3, "lambda_l1": 1.0},
        "hc": {"epochs": 3, "lambda_l0": 1.0}, "ig": {"ig_steps": 3}}
def louder_llama(seed: int = 0):
    """tiny_llama with 4x larger matrices (std 0.02 makes single units nearly irrelevant)."""
    model = tiny_llama(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4)
    return model


MODELS = {"gpt2": tiny_gpt2, "llama": louder_llama}
D_FF = {"gpt2": 128, "llama": 64}


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def mlp_downs(model):
    """The plain model's down projections, block order (independent of the library's lookup)."""
    if hasattr(model, "transformer"):
        return [block.mlp.c_proj for block in model.transformer.h]
    return [layer.mlp.down_proj for layer in model.model.layers]


@contextlib.contextmanager
def replace_input(module, fn):
    handle = module.register_forward_pre_hook(lambda mod, args: (fn(args[0]),))
    try:
        yield
    finally:
        handle.remove()


def suffix_loss(model, x, prefix_len):
    """Mean over rows of each row's mean CE on tokens prefix_len.. (rows of equal length, no padding)."""
    labels = x.clone()
    labels[:, :prefix_len] = -100
    with torch.no_grad():
        return model(x, labels=labels).loss.item()


def gold_probs(model, x):
    """p(x[t+1] | x[:t+1]) for every t: [B, T-1]."""
    with torch.no_grad():
        logits = model(x).logits[:, :-1]
    return torch.softmax(logits.double(), -1).gather(-1, x[:, 1:, None]).squeeze(-1)


# ---- registry and configs ----------------------------------------------------------------------------------------

def test_registry_lists_the_eleven_mask_methods_before_the_lora_ones():
    assert method_names() == ["greedy", "sou", "durable", "durable_agg", "subnet", "balanced_subnet", *NEURON,
                              "gradient_ascent", "grad_diff", "npo", "simnpo"]
    classes = [ZeroConfig, ActConfig, SlimConfig, HardConcreteConfig, IntegratedGradientsConfig]
    for name, cls in zip(NEURON, classes):
        method = get_method(name)
        assert method.config_class is cls and type(make_config(name, ratio=0.02)) is cls
        assert not method.needs_retain and method.score is not None and issubclass(cls, NeuronMaskConfig)


@pytest.mark.parametrize("name", NEURON)
def test_config_round_trips_through_adapter_config_json(name, tmp_path):
    config = make_config(name, ratio=0.123, selection="global", skip_first_layer=True, prefix_len=3)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "NEURON_MASK" and saved["method"] == name and saved["selection"] == "global"
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert type(loaded) is type(config) and loaded.to_dict() == config.to_dict()


@pytest.mark.parametrize("cls, field, value, allowed", [
    (ZeroConfig, "ratio", 0.0, r"\(0.0, 1.0\)"),
    (ActConfig, "selection", "layer", "'per_layer', 'global'"),
    (ActConfig, "per_sequence", 1, "True, False"),
    (SlimConfig, "prefix_len", 0, "integer >= 1"),
    (SlimConfig, "lambda_l1", -1.0, r"\(0.0, inf\)"),
    (SlimConfig, "epochs", 0, "integer >= 1"),
    (HardConcreteConfig, "mask_p", 1.0, r"\(0.0, 1.0\)"),
    (HardConcreteConfig, "beta", 0.0, r"\(0.0, inf\)"),
    (HardConcreteConfig, "zeta", 1.0, r"\(1.0, inf\)"),
    (IntegratedGradientsConfig, "ig_steps", 0, "integer >= 1"),
    (ZeroConfig, "trainable_coefficients", True, "allowed: False"),
    (ZeroConfig, "units_per_pass", 0, "integer >= 1"),
])
def test_config_validation_names_value_and_range(cls, field, value, allowed):
    with pytest.raises(ValueError, match=rf"{field}={value!r}.*{allowed}"):
        cls(**{field: value})


def test_faithful_defaults():
    slim, hc, ig = SlimConfig(), HardConcreteConfig(), IntegratedGradientsConfig()
    assert (slim.lr, slim.lambda_l1, slim.stop_loss, slim.per_sequence) == (0.1, 1000.0, 0.1, False)
    assert (hc.lr, hc.lambda_l0, hc.mask_p, hc.beta, hc.gamma, hc.zeta) == (0.1, 1000.0, 0.5, 2 / 3, -0.1, 1.1)
    assert ig.ig_steps == 20
    assert all((c.selection, c.skip_first_layer, c.prefix_len) == ("per_layer", False, 1)
               for c in (ZeroConfig(), ActConfig(), slim, hc, ig))


# ---- scores against independent computations ---------------------------------------------------------------------

@pytest.mark.parametrize("arch", MODELS)
def test_zero_score_is_the_loss_increase_of_ablating_each_neuron(arch):
    model, x, prefix = MODELS[arch](), token_rows(5, length=12, seed=3), 4
    # batch_size and units_per_pass that divide neither the rows nor d_ff
    scores = neuron_scores(model, ZeroConfig(prefix_len=prefix, batch_size=3, units_per_pass=7), x, progress=False)
    base = suffix_loss(model, x, prefix)
    expected = torch.zeros(2, D_FF[arch])
    for layer, down in enumerate(mlp_downs(model)):
        for unit in range(D_FF[arch]):
            keep = torch.ones(D_FF[arch])
            keep[unit] = 0
            with replace_input(down, lambda a, keep=keep: a * keep):
                expected[layer, unit] = suffix_loss(model, x, prefix) - base
    assert expected.abs().max() > 1e-3  # ablations matter on this model
    assert torch.allclose(scores, expected, atol=2e-5), (scores - expected).abs().max()


def test_zero_with_padding_is_the_mean_of_the_rows_alone():
    """Padded positions stay out of the loss: a padded set scores as the average of its rows scored alone."""
    model, x = tiny_gpt2(), token_rows(2, length=10, seed=6)
    mask = torch.ones_like(x)
    mask[1, 7:] = 0
    data = Dataset.from_dict({"input_ids": x.tolist(), "attention_mask": mask.tolist()})
    config = ZeroConfig(prefix_len=2, units_per_pass=64)
    together = neuron_scores(model, config, data, progress=False)
    alone = (neuron_scores(model, config, x[:1], progress=False)
             + neuron_scores(model, config, x[1:, :7], progress=False)) / 2
    assert torch.allclose(together, alone, atol=2e-6)


@pytest.mark.parametrize("arch", MODELS)
def test_act_score_formula_on_hand_made_activations(arch):
    """|mean| (not mean |.|) over rows and scored positions, times ||W_out[:, i]||; per_sequence averages the
    per-row |means|. The activations are replaced by a hand-made tensor."""
    model, x = MODELS[arch](), token_rows(2, length=6)
    d = D_FF[arch]
    acts = torch.zeros(2, 6, d)
    acts[:, :, 0] = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])  # mean 0 over the scored positions
    acts[:, :, 1] = -2.0                                            # |mean| = 2
    acts[0, :, 2], acts[1, :, 2] = 3.0, -3.0                        # pooled mean 0, per row |3|
    acts[:, 5, 3] = 100.0                                           # position T-1 predicts nothing: ignored
    acts[:, 0, 4] = 7.0                                             # position 0 is before prefix_len - 1 = 1
    down_norms = [
        (down.weight.norm(dim=1) if arch == "gpt2" else down.weight.norm(dim=0)).detach() for down in mlp_downs(model)
    ]
    with contextlib.ExitStack() as stack:
        for down in mlp_downs(model):
            stack.enter_context(replace_input(down, lambda a: acts.clone()))
        pooled = neuron_scores(model, ActConfig(prefix_len=2), x, progress=False)
        per_row = neuron_scores(model, ActConfig(prefix_len=2, per_sequence=True), x, progress=False)
    # scored positions t = 1..4: unit 0 has values -1, 1, -1, 1 there -> mean 0
    for layer in range(2):
        norm = down_norms[layer]
        assert torch.allclose(pooled[layer, :5], torch.tensor([0.0, 2.0, 0.0, 0.0, 0.0]) * norm[:5], atol=1e-6)
        assert torch.allclose(per_row[layer, :5], torch.tensor([0.0, 2.0, 3.0, 0.0, 0.0]) * norm[:5], atol=1e-6)
        assert (pooled[layer, 5:] == 0).all()


@pytest.mark.parametrize("arch", MODELS)
def test_act_scores_real_activations_with_padding(arch):
    model, x = MODELS[arch](), token_rows(3, length=8)
    mask = torch.ones_like(x)
    mask[2, 5:] = 0
    data = Dataset.from_dict({"input_ids": x.tolist(), "attention_mask": mask.tolist()})
    captured = []
    with contextlib.ExitStack() as stack:
        for down in mlp_downs(model):
            stack.enter_context(replace_input(down, lambda a: captured.append(a.detach().clone()) or a))
        scores = neuron_scores(model, ActConfig(batch_size=2), data, progress=False)
    # captured: [batch0 layer0, batch0 layer1, batch1 layer0, batch1 layer1]
    valid = torch.ones(3, 7, dtype=torch.bool)
    valid[2, 4:] = False  # position t is scored iff token t+1 is real
    for layer, down in enumerate(mlp_downs(model)):
        acts = torch.cat([captured[layer], captured[2 + layer]])[:, :-1]
        mean = acts[valid].mean(dim=0).abs()
        norm = down.weight.norm(dim=1) if arch == "gpt2" else down.weight.norm(dim=0)
        assert torch.allclose(scores[layer], mean * norm.detach(), rtol=1e-5, atol=1e-7)


def _layer_probability_without(model, x, layer, t):
    """p(x[t+1] | x[:t+1]) with block `layer`'s whole activation vector zeroed at position t only."""
    def zero_at_t(a):
        a = a.clone()
        a[:, t] = 0
        return a
    with replace_input(mlp_downs(model)[layer], zero_at_t):
        return gold_probs(model, x)[:, t]


@pytest.mark.parametrize("arch", MODELS)
def test_ig_converges_to_the_exact_integral_and_honours_steps(arch):
    """Completeness: summed over a block's units, IG_t tends to p(a) - p(0) (the exact path integral of the
    gradient) as ig_steps grows; ig_steps=1 is a * grad at the baseline, a different number."""
    model, x, prefix = MODELS[arch](), token_rows(2, length=7, seed=5), 3
    p = gold_probs(model, x)
    exact = torch.stack([
        torch.stack([(p[:, t] - _layer_probability_without(model, x, layer, t)).mean()
                     for t in range(prefix - 1, 6)]).mean() for layer in range(2)
    ])
    sums = {}
    for steps in (1, 400):
        config = IntegratedGradientsConfig(ig_steps=steps, prefix_len=prefix, queries_per_pass=500)
        sums[steps] = neuron_scores(model, config, x, progress=False).double().sum(dim=1)
    assert exact.abs().min() > 1e-4
    assert torch.allclose(sums[400], exact, rtol=0.02, atol=1e-6), (sums[400], exact)
    assert not torch.allclose(sums[1], exact, rtol=0.1), (sums[1], exact)


def test_ig_on_a_linear_toy_matches_the_closed_form_integral():
    """A 1-block GPT-2 with 2 tokens and no final LayerNorm: the logit gap is linear in the substituted
    activation, gap(alpha) = c + alpha * s with s = sum_i a_i u_i (u_i = W_out[i] . (E_gold - E_other)), so
    p(alpha) = sigmoid(gap) and IG_i = a_i u_i * (sigmoid(c + s) - sigmoid(c)) / s exactly. MemPi's m-point rule
    gives a_i u_i * mean_k sigmoid'(c + alpha_k s): at m = 1 only the slope at the baseline."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=2, n_embd=8, n_layer=1, n_head=2, n_positions=8, n_inner=16,
                                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(20)
    model.transformer.ln_f = torch.nn.Identity()
    x, t = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0]]), 3  # one scored position: prefix_len = 4
    down = model.transformer.h[0].mlp.c_proj
    captured = []
    with replace_input(down, lambda a: captured.append(a[:, t].detach().clone()) or a), torch.no_grad():
        model(x)
    a = captured[0].double()  # [2 rows, 16 units]
    gold = x[:, t + 1]
    e = model.transformer.wte.weight.detach().double()
    direction = e[gold] - e[1 - gold]  # [2, 8]
    u = direction @ down.weight.detach().double().T  # [2, 16]: W_out[i] . (E_gold - E_other)

    def gap(alpha):
        with replace_input(down, lambda act: torch.cat([act[:, :t], alpha * act[:, t:t + 1], act[:, t + 1:]], 1)), \
                torch.no_grad():
            logits = model(x).logits[:, t].double()
        return logits.gather(1, gold[:, None]).squeeze(1) - logits.gather(1, (1 - gold)[:, None]).squeeze(1)

    c, s = gap(0.0), gap(1.0) - gap(0.0)
    assert torch.allclose(s, (a * u).sum(dim=1), rtol=1e-5)  # the toy is linear as claimed
    exact = (a * u * ((torch.sigmoid(c + s) - torch.sigmoid(c)) / s)[:, None]).mean(dim=0)

    def rule(m):
        alphas = torch.linspace(0, 1, m, dtype=torch.float64)
        slope = torch.sigmoid(c[:, None] + alphas * s[:, None])
        return (a * u * (slope * (1 - slope)).mean(dim=1)[:, None]).mean(dim=0)

    scores = {m: neuron_scores(model, IntegratedGradientsConfig(ig_steps=m, prefix_len=4, ratio=0.1), x,
                               progress=False)[0].double() for m in (1, 3, 300)}
    scale = exact.abs().max()
    for m in (1, 3, 300):
        assert torch.allclose(scores[m], rule(m), atol=1e-5 * scale, rtol=1e-4), m
    assert torch.allclose(scores[300], exact, atol=0.01 * scale)
    assert (scores[1] - exact).abs().max() > 0.1 * scale  # one step is far from the integral


def test_ig_formula_against_gradients_taken_by_hand():
    """ig_steps=2: alpha in {0, 1}, score = a * (grad(0) + grad(a)) / 2 at the one scored position."""
    model, x, prefix = tiny_gpt2(), token_rows(1, length=5, seed=7), 4  # one scored position t = 3
    t, layer = 3, 1
    down = mlp_downs(model)[layer]
    captured = []
    with replace_input(down, lambda act: captured.append(act[:, t].detach().clone()) or act), torch.no_grad():
        model(x)
    a = captured[0]
    grads = []
    for alpha in (0.0, 1.0):
        v = (alpha * a).clone().requires_grad_(True)

        def substitute(act, v=v):
            act = act.clone()
            act[:, t] = v
            return act
        with replace_input(down, substitute):
            prob = torch.softmax(model(x).logits[0, t], -1)[x[0, t + 1]]
        grads.append(torch.autograd.grad(prob, v)[0])
    expected = (a * (grads[0] + grads[1]) / 2)[0]
    for batch_positions in (True, False):
        config = IntegratedGradientsConfig(ig_steps=2, prefix_len=prefix, batch_positions=batch_positions)
        scores = neuron_scores(model, config, x, progress=False)
        assert torch.allclose(scores[layer], expected, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("arch", MODELS)
def test_ig_query_batching_equals_the_reference_procedure(arch):
    """Many positions per pass (query tokens) == one truncated forward per position == one row at a time."""
    model, x = MODELS[arch](), token_rows(3, length=9, seed=2)
    mask = torch.ones_like(x)
    mask[1, 6:] = 0
    data = Dataset.from_dict({"input_ids": x.tolist(), "attention_mask": mask.tolist()})
    kw = {"ig_steps": 3, "prefix_len": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the query path itself, no fallback
        fast = neuron_scores(model, IntegratedGradientsConfig(**kw, queries_per_pass=10, batch_size=2), data,
                             progress=False)
    slow = neuron_scores(model, IntegratedGradientsConfig(**kw, batch_positions=False), data, progress=False)
    alone = sum(neuron_scores(model, IntegratedGradientsConfig(**kw, batch_positions=False), data.select([i]),
                              progress=False) for i in range(3)) / 3
    scale = slow.abs().max()
    assert scale > 0
    assert torch.allclose(fast, slow, atol=1e-5 * scale) and torch.allclose(slow, alone, atol=1e-5 * scale)


def test_ig_falls_back_when_a_model_ignores_custom_attention_masks(monkeypatch):
    from hf_memmit.unlearning.neuron import integrated_gradients

    model, x = tiny_gpt2(), token_rows(2, length=6)
    config = IntegratedGradientsConfig(ig_steps=2, prefix_len=3)
    expected = neuron_scores(model, config, x, progress=False)
    ids = x.clone()
    assert integrated_gradients._queries_exact(model, ids, None, torch.arange(5), torch.float32)
    real_inputs = integrated_gradients._query_inputs

    def leaky(*args):  # queries that also see each other: the check must notice
        ext, position_ids, allowed = real_inputs(*args)
        return ext, position_ids, allowed | torch.ones_like(allowed).tril()
    monkeypatch.setattr(integrated_gradients, "_query_inputs", leaky)
    assert not integrated_gradients._queries_exact(model, ids, None, torch.arange(5), torch.float32)

    def unused(*args):
        raise AssertionError("the query path ran")
    monkeypatch.setattr(integrated_gradients, "_score_queries", unused)
    with pytest.warns(UserWarning, match="falls back to one truncated forward per position"):
        fallback = neuron_scores(model, config, x, progress=False)
    assert torch.allclose(fallback, expected, atol=1e-8)


# ---- mask training -----------------------------------------------------------------------------------------------

def _count_forwards(model):
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    return calls


@pytest.mark.parametrize("name", ["slim", "hc"])
def test_masks_train_and_respect_the_sparsity_term(name):
    x = token_rows(6, length=12)
    lam = "lambda_l1" if name == "slim" else "lambda_l0"
    means = {}
    for strength in (0.0, 1000.0):
        config = make_config(name, epochs=8, batch_size=3, **{lam: strength})
        scores = neuron_scores(tiny_gpt2(), config, x, progress=False)
        init = 1.0 if name == "slim" else 0.5  # m = 1 and sigmoid(logit((0.5 + 0.1) / 1.2)) = 0.5
        assert (scores - init).abs().max() > 0.05  # the scores moved
        means[strength] = scores.mean().item()
    assert means[1000.0] < means[0.0] - 0.3, means  # the sparsity term pulls the gates down


@pytest.mark.parametrize("name", ["slim", "hc"])
def test_early_stop_on_the_sparsity_term(name):
    x = token_rows(4, length=10)
    model = tiny_gpt2()
    calls = _count_forwards(model)
    config = make_config(name, epochs=40, check_every=4, stop_loss=0.6 if name == "slim" else 0.7, batch_size=4)
    scores = neuron_scores(model, config, x, progress=False)
    assert 1 < len(calls) < 40 and (len(calls) - 1) % 4 == 0  # stopped at a check, before the step
    if name == "slim":
        assert scores.mean() < 0.6


def test_hard_concrete_initialisation_is_the_constant_from_mask_p():
    """Stopping at step 0 (before any update) leaves sigmoid(log alpha) = (mask_p - gamma) / (zeta - gamma)
    for every unit: the constant init, not TinyMem's N(0, 0.01) noise."""
    config = HardConcreteConfig(mask_p=0.9, beta=2 / 3, stop_loss=0.99, epochs=5)
    scores = neuron_scores(tiny_gpt2(), config, token_rows(2), progress=False)
    assert torch.allclose(scores, torch.full_like(scores, 1.0 / 1.2), atol=1e-6)


def test_slim_per_sequence_equals_one_run_per_row():
    """MemPi's semantics: every row trains its own mask on itself; rows run side by side (here 2 at a time)
    with per-row early stops, and the scores are the average."""
    x = token_rows(3, length=10, seed=4)
    kw = {"epochs": 14, "check_every": 1, "stop_loss": 0.75, "lr": 0.05, "lambda_l1": 0.3}
    model = tiny_gpt2()
    together = neuron_scores(model, SlimConfig(per_sequence=True, batch_size=2, **kw), x, progress=False)
    calls = _count_forwards(model)
    alone = []
    for i in range(3):
        alone.append(neuron_scores(model, SlimConfig(**kw), x[i:i + 1], progress=False))
        calls.append("end")
    assert torch.allclose(together, sum(alone) / 3, atol=1e-6)
    assert not torch.allclose(alone[0], alone[1], atol=1e-3)
    steps = [len(run) for run in "".join("." if c == 1 else "|" for c in calls).split("|")[:3]]
    assert steps[0] != steps[1], steps  # rows 0 and 1 share a batch but stop at different steps


# ---- selection -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", MODELS)
@pytest.mark.parametrize("name", NEURON)
def test_unlearn_drops_the_top_scores_per_layer(name, arch):
    x = token_rows(4, length=10)
    config = make_config(name, ratio=0.05, **FAST[name])
    scores = neuron_scores(MODELS[arch](), config, x, progress=False)
    model = unlearn(MODELS[arch](), config, x, progress=False)
    keep = model.base_model.keep_mask()
    k = int(0.05 * D_FF[arch])
    assert keep.shape == (2, D_FF[arch]) and (~keep).sum(dim=1).tolist() == [k, k]
    for layer in range(2):
        dropped, kept = scores[layer][~keep[layer]], scores[layer][keep[layer]]
        assert dropped.min() >= kept.max()


def test_global_selection_and_skip_first_layer():
    x = token_rows(4, length=10)
    scores = neuron_scores(tiny_gpt2(), ActConfig(), x, progress=False)
    model = unlearn(tiny_gpt2(), ActConfig(ratio=0.05, selection="global"), x, progress=False)
    keep = model.base_model.keep_mask()
    assert int((~keep).sum()) == int(0.05 * 256)
    assert scores[~keep].min() >= scores[keep].max()
    assert (~keep).sum(dim=1).tolist() != [6, 6]  # the top units are not spread evenly

    skipped = unlearn(tiny_gpt2(), ActConfig(ratio=0.05, skip_first_layer=True), x, progress=False)
    assert (~skipped.base_model.keep_mask()).sum(dim=1).tolist() == [0, 6]
    skipped_scores = neuron_scores(tiny_gpt2(), ActConfig(skip_first_layer=True), x, progress=False)
    assert skipped_scores[0].isnan().all() and torch.equal(skipped_scores[1], scores[1])
    skipped_global = unlearn(tiny_gpt2(), ActConfig(ratio=0.05, selection="global", skip_first_layer=True), x,
                             progress=False)
    assert (~skipped_global.base_model.keep_mask()).sum(dim=1).tolist() == [0, 6]  # floor(0.05 * 128) in block 1


def test_a_tie_at_the_selection_cut_is_reported():
    """With lambda far above the LM gradients, Adam moves every Slim coefficient alike (about lr per step), so
    the scores tie up to rounding and the top-k would be arbitrary: a warning says so."""
    x = token_rows(4, length=10)
    with pytest.warns(UserWarning, match=r"slim: the top-6 cut falls inside a tie .* block 0: \d+ units share"):
        unlearn(tiny_gpt2(), SlimConfig(ratio=0.05, epochs=3, lambda_l1=1000.0), x, progress=False)


def test_a_ratio_selecting_no_neuron_is_an_error_before_any_scoring():
    model = tiny_gpt2()
    calls = _count_forwards(model)
    with pytest.raises(ValueError, match=r"ratio=0.005 selects floor\(0.005 \* d_ff 128\) = 0 units per layer.*"
                                         r"allowed: ratio >= 0.00781"):
        unlearn(model, ZeroConfig(ratio=0.005), token_rows(2), progress=False)
    assert calls == []
    with pytest.raises(ValueError, match=r"= 0 units in total"):
        unlearn(tiny_gpt2(), ActConfig(ratio=0.003, selection="global"), token_rows(2), progress=False)
    # globally 0.005 * 256 units = 1 unit: allowed, and exactly one goes
    one = unlearn(tiny_gpt2(), ActConfig(ratio=0.005, selection="global"), token_rows(2), progress=False)
    assert int((~one.base_model.keep_mask()).sum()) == 1
    with pytest.raises(ValueError, match="prefix_len=10 leaves no token to score"):
        unlearn(tiny_gpt2(), ActConfig(prefix_len=10), token_rows(2, length=10), progress=False)


def test_d_ff_comes_from_the_config():
    """GPT-2 with n_inner != 4 * n_embd (MemPi hard-coded 4 * hidden); a target whose input is not d_ff wide
    (the attention's c_proj) is refused."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=14, n_embd=16, n_layer=2, n_head=2, n_positions=16, n_inner=40))
    model.eval()
    scores = neuron_scores(model, ActConfig(), token_rows(2, length=8), progress=False)
    assert scores.shape == (2, 40)
    fitted = unlearn(model, ZeroConfig(ratio=0.05), token_rows(2, length=8), progress=False)
    assert (~fitted.base_model.keep_mask()).sum(dim=1).tolist() == [2, 2]
    with pytest.raises(ValueError, match="the model config says d_ff=128 but the down projections have 32"):
        unlearn(tiny_gpt2(), ActConfig(target_modules=r".*\.attn\.c_proj"), token_rows(2), progress=False)


# ---- adapters ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", MODELS)
@pytest.mark.parametrize("name", NEURON)
def test_saved_and_reloaded_adapter_has_the_same_mask_and_merges(name, arch, tmp_path):
    x, probe = token_rows(4, length=10), token_rows(3, length=10, seed=8)
    model = unlearn(MODELS[arch](), make_config(name, ratio=0.05, **FAST[name]), x, progress=False)
    with torch.no_grad():
        masked = model(probe).logits
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(MODELS[arch](), tmp_path)
    assert type(loaded.peft_config["default"]) is get_method(name).config_class
    assert torch.equal(loaded.base_model.keep_mask(), model.base_model.keep_mask())
    via_transformers = MODELS[arch]()
    via_transformers.load_adapter(str(tmp_path))
    with torch.no_grad():
        assert torch.equal(loaded(probe).logits, masked)
        assert torch.equal(via_transformers(probe).logits, masked)
        plain = loaded.merge_and_unload()
        assert not hasattr(plain, "peft_config")
        assert torch.allclose(plain(probe).logits, masked, atol=1e-5)
        # the merged model is the base with the dropped units' down-projection slices zeroed
        reference = MODELS[arch]()
        keep = model.base_model.keep_mask()
        for layer, down in enumerate(mlp_downs(reference)):
            down.weight.mul_(keep[layer][:, None] if arch == "gpt2" else keep[layer][None, :])
        assert torch.allclose(reference(probe).logits, masked, atol=1e-5)
        assert not torch.allclose(MODELS[arch]()(probe).logits, masked, atol=1e-4)


def test_scoring_leaves_the_model_unchanged_and_in_its_mode():
    model, x = tiny_gpt2(), token_rows(3)
    before = copy.deepcopy(model.state_dict())
    model.train()
    for name in NEURON:
        neuron_scores(model, make_config(name, **FAST[name]), x, progress=False)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_zero_ablation_lowers_forget_probability_more_than_a_random_mask():
    """Behaviour on a model that memorized its rows: dropping Zero's top units raises the forget loss more
    than dropping as many random units, for every one of 20 random draws."""
    torch.manual_seed(0)
    model, x = tiny_gpt2(), token_rows(6, length=12, seed=11)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        optimizer.zero_grad()
        model(x, labels=x).loss.backward()
        optimizer.step()
    model.eval()
    base = suffix_loss(model, x, 1)
    zero = unlearn(copy.deepcopy(model), ZeroConfig(ratio=0.05, units_per_pass=64), x, progress=False)
    rise = suffix_loss(zero, x, 1) - base
    rand = unlearn(copy.deepcopy(model), ActConfig(ratio=0.05), x, progress=False)
    random_rises = []
    for seed in range(20):
        random_keep = torch.ones(2, 128, dtype=torch.bool)
        for layer in range(2):  # 6 of 128 units per layer, as ratio 0.05 drops
            drop = torch.randperm(128, generator=torch.Generator().manual_seed(100 * seed + layer))[:6]
            random_keep[layer, drop] = False
        rand.base_model.set_keep_mask(random_keep)
        random_rises.append(suffix_loss(rand, x, 1) - base)
    assert (~zero.base_model.keep_mask()).sum().item() == 12
    assert rise > 0 and rise > max(random_rises)
