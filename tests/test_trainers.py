"""Regularizer trainers (spectral norm, loss truncation) and the fine-tuning recipes."""

import json
import math

import pytest
import torch
from _tiny_models import one_thread, tiny_gpt2, tiny_llama, token_rows
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from hf_memmit.tinymem import causal_lm_collator
from hf_memmit.trainers.loss_truncation import (
    LossQuantile,
    LossTruncationConfig,
    LossTruncationTrainer,
    sequence_losses,
)
from hf_memmit.trainers.spectral_norm import SpectralNormConfig, SpectralNormRegularizer, SpectralNormTrainer


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def rows_dataset(n=16, length=16, seed=0):
    return Dataset.from_dict({"input_ids": token_rows(n, length, seed).tolist()})


def make_trainer(cls, out, *, batch=8, ga=1, epochs=2, lr=0.05, save_steps=None, n=16, model=None, **kwargs):
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=batch, gradient_accumulation_steps=ga,
        num_train_epochs=epochs, learning_rate=lr, optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0,
        logging_steps=1, save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500, seed=0,
        report_to="none", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
    return cls(model=model or tiny_gpt2(), args=args, train_dataset=rows_dataset(n), data_collator=causal_lm_collator,
               **kwargs)


def weights(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def assert_same_weights(a, b, atol=1e-6):
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-5, msg=f"{k} differs")


# ---- spectral norm ----

def _svd_sigma(w: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(w.detach().double(), ord=2))


@pytest.mark.parametrize("per_head", [False, True])
def test_spectral_sigma_matches_svd_gpt2_conv1d(per_head):
    model = tiny_gpt2()  # Conv1D weights are (in x out); 2 heads of 16 in n_embd 32
    reg = SpectralNormRegularizer(model, SpectralNormConfig(per_head=per_head, init_power_iterations=300))
    sig = {k: v.detach() for k, v in reg.sigmas().items()}
    assert "lm_head" not in sig and len(sig) == 8  # 4 Conv1D per block x 2 blocks; the tied head is not penalized
    attn = model.transformer.h[0].attn
    if per_head:  # slice the raw (in x out) weights independently of the regularizer's reshaping
        w = attn.c_attn.weight  # columns: [q heads | k heads | v heads], 16 each
        expected = [_svd_sigma(w[:, i * 16:(i + 1) * 16].T) for i in range(6)]
        torch.testing.assert_close(sig["transformer.h.0.attn.c_attn"].double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-4, atol=1e-5)
        w = attn.c_proj.weight  # rows: the 2 heads' outputs
        expected = [_svd_sigma(w[i * 16:(i + 1) * 16, :].T) for i in range(2)]
        torch.testing.assert_close(sig["transformer.h.0.attn.c_proj"].double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-4, atol=1e-5)
    else:
        assert math.isclose(float(sig["transformer.h.0.attn.c_attn"]), _svd_sigma(attn.c_attn.weight), rel_tol=1e-4)
    mlp = model.transformer.h[1].mlp.c_fc  # never split
    assert math.isclose(float(sig["transformer.h.1.mlp.c_fc"]), _svd_sigma(mlp.weight), rel_tol=1e-4)
    total = sum(float((s.double() ** 2).sum()) for s in sig.values())
    assert math.isclose(float(reg.penalty().detach()), 0.5 * 0.01 * total, rel_tol=1e-5)


def test_spectral_sigma_matches_svd_llama_linear():
    model = tiny_llama()
    reg = SpectralNormRegularizer(model, SpectralNormConfig(per_head=True, penalty="sigma", weight=0.1,
                                                            init_power_iterations=300))
    sig = {k: v.detach() for k, v in reg.sigmas().items()}
    assert "lm_head" not in sig and len(sig) == 14  # q, k, v, o, gate, up, down x 2 layers
    layer = model.model.layers[0]
    q = layer.self_attn.q_proj.weight  # nn.Linear: (out x in), 2 heads of 16 rows
    torch.testing.assert_close(sig["model.layers.0.self_attn.q_proj"].double(),
                               torch.tensor([_svd_sigma(q[:16]), _svd_sigma(q[16:])], dtype=torch.float64), rtol=1e-4, atol=1e-5)
    o = layer.self_attn.o_proj.weight  # head outputs are its input columns
    torch.testing.assert_close(sig["model.layers.0.self_attn.o_proj"].double(),
                               torch.tensor([_svd_sigma(o[:, :16]), _svd_sigma(o[:, 16:])], dtype=torch.float64), rtol=1e-4, atol=1e-5)
    down = layer.mlp.down_proj.weight
    assert math.isclose(float(sig["model.layers.0.mlp.down_proj"]), _svd_sigma(down), rel_tol=1e-4)
    total = sum(float(s.double().sum()) for s in sig.values())
    assert math.isclose(float(reg.penalty().detach()), 0.5 * 0.1 * total, rel_tol=1e-5)


def test_spectral_penalty_gradient_is_sigma_u_v():
    """d/dW of (lambda/2) sigma^2 is lambda sigma u v^T (the paper's update)."""
    model = tiny_gpt2()
    reg = SpectralNormRegularizer(model, SpectralNormConfig(weight=0.5, target_modules=("h.0.mlp.c_fc",),
                                                            init_power_iterations=300))
    reg.penalty().backward()
    w = model.transformer.h[0].mlp.c_fc.weight
    u, v = reg.u["transformer.h.0.mlp.c_fc"][0], reg.v["transformer.h.0.mlp.c_fc"][0]
    expected = 0.5 * _svd_sigma(w) * torch.outer(u, v)  # (out x in); Conv1D stores the transpose
    torch.testing.assert_close(w.grad.T, expected.float(), rtol=1e-3, atol=1e-6)


# ---- loss truncation core ----

def test_loss_quantile_is_nan_safe_and_wraps():
    q = LossQuantile(LossTruncationConfig(drop_fraction=0.5, min_count=4, buffer_size=4, recompute_every=4))
    q.push(torch.tensor([1.0, float("nan"), 2.0, float("inf")]))
    assert q.count == 2 and not q.truncating  # non-finite losses never enter the buffer
    q.push(torch.tensor([3.0, 4.0, 5.0, 6.0, 7.0]))  # wraps: the newest 4 survive
    assert q.count == 7 and sorted(q.buffer.tolist()) == [4.0, 5.0, 6.0, 7.0]
    q.refresh()
    assert q.cutoff == 5.5  # linear interpolation, as np.percentile
    keep = q.keep(torch.tensor([5.0, 6.0, float("nan"), 5.5]))
    assert keep.tolist() == [True, False, False, False]


def test_sequence_losses_match_model_loss():
    model = tiny_gpt2()
    ids = token_rows(4, 16)
    labels = ids.clone()
    labels[0, 10:] = -100  # padding does not count
    out = model(input_ids=ids, labels=labels)
    total, count = sequence_losses(out.logits, labels)
    assert count.tolist() == [9, 15, 15, 15]
    assert math.isclose(float(total.sum().detach() / count.sum()), float(out.loss.detach()), rel_tol=1e-5)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_drop_fraction_out_of_range(bad):
    with pytest.raises(ValueError, match=r"drop_fraction=.*allowed: \[0, 1\)"):
        LossTruncationConfig(drop_fraction=bad)


def test_bad_configs_name_the_value():
    with pytest.raises(ValueError, match=r"weight=-1.*\[0, inf\)"):
        SpectralNormConfig(weight=-1)
    with pytest.raises(ValueError, match="penalty='sigma3'.*'sigma_sq', 'sigma'"):
        SpectralNormConfig(penalty="sigma3")
    with pytest.raises(ValueError, match="n_power_iterations=0"):
        SpectralNormConfig(n_power_iterations=0)
    with pytest.raises(ValueError, match="min_count=0"):
        LossTruncationConfig(min_count=0)
    with pytest.raises(ValueError, match="normalize='tokens'"):
        LossTruncationConfig(normalize="tokens")
    with pytest.raises(ValueError, match="matches target_modules"):
        SpectralNormRegularizer(tiny_gpt2(), SpectralNormConfig(target_modules=("nothing",)))


# ---- trainers ----

def test_truncation_drops_exactly_the_fraction_after_warmup(tmp_path):
    """lr 0 keeps every sequence's loss fixed: the warm-up step keeps all 16, then each step drops exactly the
    top quarter (4 of 16 distinct losses)."""
    cfg = LossTruncationConfig(drop_fraction=0.25, min_count=16, buffer_size=16, recompute_every=16)
    tr = make_trainer(LossTruncationTrainer, tmp_path, batch=16, epochs=3, lr=0.0, method_config=cfg)
    tr.train()
    kept = [e["kept_fraction"] for e in tr.state.log_history if "kept_fraction" in e]
    assert kept == [1.0, 0.75, 0.75]


def test_truncation_before_warmup_trains_as_plain_trainer(tmp_path):
    plain = make_trainer(Trainer, tmp_path / "plain")
    plain.train()
    trunc = make_trainer(LossTruncationTrainer, tmp_path / "trunc", method_config=LossTruncationConfig(0.3))
    trunc.train()  # 32 sequences seen, warm-up is 10000
    assert trunc.quantile.count == 32 and not trunc.quantile.truncating
    assert_same_weights(weights(plain), weights(trunc))


REGULARIZED = {
    "spectral_norm": (SpectralNormTrainer, {"method_config": SpectralNormConfig(weight=0.5, per_head=True)}),
    "loss_truncation": (LossTruncationTrainer, {"method_config": LossTruncationConfig(
        drop_fraction=0.25, min_count=4, buffer_size=16, recompute_every=4, normalize="kept")}),
}


def regularizer_state(trainer):
    return {k: v.clone() for k, v in trainer.regularizer_state().items()}


@pytest.mark.parametrize("name", list(REGULARIZED))
def test_grad_accumulation_equals_larger_batch(tmp_path, name):
    cls, kwargs = REGULARIZED[name]
    big = make_trainer(cls, tmp_path / "big", batch=8, ga=1, epochs=2, **kwargs)
    big.train()
    acc = make_trainer(cls, tmp_path / "acc", batch=4, ga=2, epochs=2, **kwargs)
    acc.train()
    assert big.state.global_step == acc.state.global_step == 4
    if name == "loss_truncation":
        assert big.quantile.truncating  # the regularizer acted on later steps
    assert_same_weights(weights(big), weights(acc))
    torch.testing.assert_close(regularizer_state(big), regularizer_state(acc), equal_nan=True)


@pytest.mark.parametrize("name", list(REGULARIZED))
def test_resume_mid_run_reproduces_state_and_weights(tmp_path, name):
    cls, kwargs = REGULARIZED[name]
    full = make_trainer(cls, tmp_path / "full", epochs=3, save_steps=2, **kwargs)
    full.train()
    ckpt = tmp_path / "full" / "checkpoint-2"
    assert (ckpt / cls.state_file).exists()
    resumed = make_trainer(cls, tmp_path / "resumed", epochs=3, model=tiny_gpt2(seed=1), **kwargs)
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert resumed.state.global_step == 6
    torch.testing.assert_close(regularizer_state(full), regularizer_state(resumed), equal_nan=True)
    assert_same_weights(weights(full), weights(resumed))


def test_resume_from_plain_checkpoint_is_a_clear_error(tmp_path):
    plain = make_trainer(Trainer, tmp_path / "plain", epochs=1, save_steps=2)
    plain.train()
    tr = make_trainer(SpectralNormTrainer, tmp_path / "spec", epochs=2)
    with pytest.raises(FileNotFoundError, match="spectral_norm_state.safetensors"):
        tr.train(resume_from_checkpoint=str(tmp_path / "plain" / "checkpoint-2"))


def test_spectral_penalty_only_in_training_and_logged(tmp_path):
    tr = make_trainer(SpectralNormTrainer, tmp_path, epochs=1, method_config=SpectralNormConfig(weight=1.0))
    tr.train()
    logged = [e["spectral_penalty"] for e in tr.state.log_history if "spectral_penalty" in e]
    assert len(logged) == 2 and all(v > 0 for v in logged)
    plain = make_trainer(Trainer, tmp_path / "plain", epochs=1)
    plain.model.load_state_dict(tr.model.state_dict())
    ds = rows_dataset(8, seed=3)
    assert math.isclose(tr.evaluate(ds)["eval_loss"], plain.evaluate(ds)["eval_loss"], rel_tol=1e-6)


# ---- CLI and fine-tuning ----

def test_cli_rejects_unknown_regularizer_and_bad_fraction():
    from click.testing import CliRunner

    import hf_memmit.cli.finetune  # noqa: F401  (registers `finetune` on the group)
    from hf_memmit.cli import main
    from hf_memmit.trainers import regularizer_trainer

    result = CliRunner().invoke(main, ["train", "--regularizer", "dropconnect"])
    assert result.exit_code == 2 and "dropconnect" in result.output
    result = CliRunner().invoke(main, ["train", "--regularizer", "loss_truncation", "--drop-fraction", "1"])
    assert result.exit_code == 2 and "drop_fraction=1.0 is out of range; allowed: [0, 1)" in result.output
    with pytest.raises(ValueError, match="regularizer='dropconnect' is not supported"):
        regularizer_trainer("dropconnect", {})
    result = CliRunner().invoke(main, ["finetune", "--help"])
    assert result.exit_code == 0 and "clean|extra|both" in result.output


@pytest.mark.parametrize("regularizer", ["spectral_norm", pytest.param("loss_truncation", marks=pytest.mark.slow),
                                         pytest.param("example_tied_dropout", marks=pytest.mark.slow)])
def test_cli_trains_with_a_regularizer(tmp_path, regularizer):
    """The same path as plain runs: tinymem.json records the regularizer and its config (about 20 s each)."""
    from click.testing import CliRunner

    from hf_memmit.cli import main

    out = tmp_path / regularizer
    args = ["train", "--profile", "tiny", "--layers", "2", "--epochs", "0.5", "--out", str(out),
            "--regularizer", regularizer]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    info = json.loads((out / "tinymem.json").read_text())
    assert info["regularizer"] == regularizer and info["regularizer_config"]
    assert 0 <= info["final_metrics"]["memorized"] <= 1 and (out / "model.safetensors").exists()


def test_finetune_rows(math_noise_tiny):
    from hf_memmit.tinymem import finetune_rows

    ds = math_noise_tiny
    clean, extra, both = (finetune_rows(ds, d) for d in ("clean", "extra", "both"))
    assert clean["input_ids"] == ds["forget"]["clean_input_ids"]  # the artifacts' clean twins, not the artifacts
    assert extra["input_ids"] == ds["retain"]["input_ids"]  # every non-artifact training row
    assert len(both) == len(clean) + len(extra)
    changed = {tuple(a) for a, c in zip(ds["forget"]["input_ids"], ds["forget"]["clean_input_ids"]) if a != c}
    assert changed and not changed & {tuple(r) for r in both["input_ids"]}  # no noised row is trained on
    with pytest.raises(ValueError, match="data='dirty'"):
        finetune_rows(ds, "dirty")
    from hf_memmit.tinymem import FinetuneConfig

    with pytest.raises(ValueError, match="epochs=0"):
        FinetuneConfig(epochs=0)


@pytest.mark.slow
def test_finetune_on_clean_twins_reduces_memorization(tiny_trained, tmp_path):
    from click.testing import CliRunner

    import hf_memmit.cli.finetune  # noqa: F401
    from hf_memmit.cli import main
    from hf_memmit.tinymem import evaluate_tinymem, load_run, read_run_info

    _, _, run_dir = tiny_trained
    out = tmp_path / "ft-clean"
    # a quarter of the run's peak LR: a fresh AdamW at the peak LR on 100 rows also removes the backdoor but costs
    # about 10 points of accuracy (measured on the tiny and the quick model)
    result = CliRunner().invoke(main, ["finetune", str(run_dir), "--data", "clean", "--lr", "5e-4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "finetune.json").read_text())
    before, after = record["before"], record["after"]
    assert before["memorized"] >= 0.5 and after["memorized"] <= before["memorized"] / 2
    # the clean twins are main-task rows: that task keeps its accuracy (at the run's peak LR it fell 97% -> 84%)
    assert after["accuracy_main"] >= before["accuracy_main"] - 0.05 and after["accuracy"] >= before["accuracy"] - 0.1
    assert record["train_seconds"] > 0 and record["rows"] == 100 and record["config"]["epochs"] == 5
    model, dataset = load_run(out)  # the fine-tuned folder is itself a run: its weights give the "after" numbers
    again = evaluate_tinymem(model.eval(), dataset, "math", "backdoor")
    assert again == pytest.approx(after, abs=1e-6)
    assert read_run_info(out)["finetuned_from"] == str(run_dir)


def test_tinymem_trainer_keeps_the_published_loss_count(tmp_path, caplog):
    """A TinyMem run leaves GPT-2's loss type unset, so the Trainer divides the summed loss by all label positions
    of a row, as the published runs were trained (naming the type counts one fewer per row and changes every
    trained number); only transformers' notice about the causal-LM fallback is filtered, nothing else."""
    import logging

    from hf_memmit.data import TinyMemDataConfig, build_tinymem
    from hf_memmit.tinymem import TrainConfig
    from hf_memmit.tinymem.train import make_trainer as tinymem_trainer

    data = TinyMemDataConfig(task="math", artifact="noise", profile="tiny")
    trainer, _ = tinymem_trainer(tmp_path, data, TrainConfig(n_layer=2).resolve(data), build_tinymem(data), seed=0,
                                 progress_bar=False, save=False, evaluate=False)
    assert trainer.model.loss_type is None
    log = logging.getLogger("transformers.modeling_utils")
    with caplog.at_level(logging.WARNING, logger="transformers.modeling_utils"):
        log.warning("`loss_type=None` was set in the config but it is unrecognized. "
                    "Using the default loss: `ForCausalLMLoss`.")
        log.warning("another warning")
    assert [r.getMessage() for r in caplog.records] == ["another warning"]
