"""Goldfish loss: which tokens are left out (by hashed context alone), the loss it trains on, gradient
accumulation, the registry and the CLI."""

import pytest
import torch
from _tiny_models import VOCAB, one_thread, tiny_gpt2, token_rows
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from hf_memmit import GoldfishConfig, GoldfishLossTrainer
from hf_memmit.metrics.cross_entropy import next_token_losses
from hf_memmit.tinymem import causal_lm_collator
from hf_memmit.trainers import goldfish_dropped, regularizer_trainer


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def test_the_same_passage_loses_the_same_tokens_anywhere():
    """A passage after different prefixes, at different rows of a batch: once h of its tokens are in, the same
    tokens are left out."""
    config = GoldfishConfig(k=4, h=3)
    passage = token_rows(1, length=40, seed=5)[0]
    a = torch.cat([token_rows(1, length=5, seed=6)[0], passage])
    b = torch.cat([token_rows(1, length=11, seed=7)[0], passage])
    batch_ab = goldfish_dropped(torch.stack([a, b[-45:]]), config)  # b cut to a's length: another offset
    only_b = goldfish_dropped(b[None], config)[0]
    # prediction position t predicts token t + 1; the passage's token j is predicted at prefix + j - 1
    in_a = batch_ab[0, 5 + 3 - 1:5 + 40 - 1]
    in_b = only_b[11 + 3 - 1:11 + 40 - 1]
    in_b_cut = batch_ab[1, 5 + 3 - 1:5 + 40 - 1]
    assert torch.equal(in_a, in_b) and torch.equal(in_a, in_b_cut) and in_a.any()
    swapped = goldfish_dropped(torch.stack([b[-45:], a]), config)
    assert torch.equal(swapped, batch_ab.flip(0))


@pytest.mark.parametrize("k", [2, 4, 8])
def test_about_one_in_k_is_left_out_and_never_before_h(k):
    ids = torch.randint(0, 50_000, (64, 200), generator=torch.Generator().manual_seed(0))
    dropped = goldfish_dropped(ids, GoldfishConfig(k=k, h=13))
    assert not dropped[:, :12].any()
    share = dropped[:, 12:].float().mean().item()
    assert abs(share - 1 / k) < 0.02, share


def test_the_hash_seed_picks_other_tokens():
    ids = torch.randint(0, 50_000, (8, 100), generator=torch.Generator().manual_seed(1))
    assert not torch.equal(goldfish_dropped(ids, GoldfishConfig(hash_seed=0)),
                           goldfish_dropped(ids, GoldfishConfig(hash_seed=1)))


def test_bad_config_names_value_and_range():
    with pytest.raises(ValueError, match="k=1.*integer >= 2"):
        GoldfishConfig(k=1)
    with pytest.raises(ValueError, match="h=0.*integer >= 1"):
        GoldfishConfig(h=0)


def rows_dataset(n=16, length=16):
    return Dataset.from_dict({"input_ids": token_rows(n, length, seed=0).tolist()})


def make_trainer(out, *, batch=8, ga=1, epochs=2, config=None, cls=GoldfishLossTrainer):
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=batch, gradient_accumulation_steps=ga,
        num_train_epochs=epochs, learning_rate=0.05, optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0,
        logging_steps=1, save_strategy="no", seed=0, report_to="none", use_cpu=True, disable_tqdm=True)
    kwargs = {"method_config": config or GoldfishConfig(k=3, h=2)} if cls is GoldfishLossTrainer else {}
    return cls(model=tiny_gpt2(), args=args, train_dataset=rows_dataset(), data_collator=causal_lm_collator,
               **kwargs)


def test_the_loss_is_the_kept_tokens_over_all_label_tokens(tmp_path):
    trainer = make_trainer(tmp_path)
    batch = causal_lm_collator([{"input_ids": r} for r in token_rows(4, seed=3).tolist()])
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    with torch.no_grad():
        tokens = next_token_losses(trainer.model(input_ids=batch["input_ids"]).logits, batch["labels"])
    kept = ~goldfish_dropped(batch["input_ids"], trainer.method_config)
    assert 0 < (~kept).sum() < kept.numel()
    # no num_items_in_batch and no accumulation: this micro-batch's label-token count
    torch.testing.assert_close(loss, (tokens * kept).sum() / tokens.numel())


def test_left_out_tokens_get_no_gradient(tmp_path):
    """Changing the target of a left-out token changes neither the loss nor its gradient."""
    config = GoldfishConfig(k=3, h=2)
    trainer = make_trainer(tmp_path, config=config)
    trainer.model.train()
    # a row whose last token (the target of the last prediction) is left out
    ids = next(x for x in (token_rows(1, length=16, seed=s) for s in range(100)) if goldfish_dropped(x, config)[0, -1])
    other = ids.clone()
    other[0, -1] = (other[0, -1] + 1) % VOCAB
    results = []
    for x in (ids, other):
        trainer.model.zero_grad()
        loss = trainer.compute_loss(trainer.model, {"input_ids": x, "labels": x})
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in trainer.model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)


def test_grad_accumulation_equals_larger_batch(tmp_path):
    big = make_trainer(tmp_path / "big", batch=8, ga=1)
    big.train()
    acc = make_trainer(tmp_path / "acc", batch=4, ga=2)
    acc.train()
    plain = make_trainer(tmp_path / "plain", cls=Trainer)
    plain.train()
    assert big.state.global_step == acc.state.global_step == 4
    for key, value in big.model.state_dict().items():
        torch.testing.assert_close(value, acc.model.state_dict()[key], atol=1e-6, rtol=1e-5)
    assert any(not torch.allclose(v, plain.model.state_dict()[k]) for k, v in big.model.state_dict().items())
    kept = [e["kept_token_fraction"] for e in big.state.log_history if "kept_token_fraction" in e]
    assert kept and all(0.5 < f < 0.9 for f in kept)


def test_registered_and_built_from_options():
    cls, kwargs, record = regularizer_trainer("goldfish", {"k": 8, "h": 5})
    assert cls is GoldfishLossTrainer and kwargs["method_config"] == GoldfishConfig(k=8, h=5)
    assert record == {"regularizer": "goldfish", "regularizer_config": {"k": 8, "h": 5, "hash_seed": 0}}
