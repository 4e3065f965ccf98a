"""MemSinks: sequence ids, packing collator, document-isolated attention, the Trainer, resume, metrics."""

import json
import math

import pytest
import torch
from _tiny_models import VOCAB, one_thread, tiny_gpt2, tiny_llama
from datasets import Dataset
from transformers import TrainingArguments

from hf_memmit.metrics.memsinks import (
    document_losses,
    gap_closure,
    kl_memorization,
    mean_document_loss,
    memorization_gap,
)
from hf_memmit.trainers.tied_dropout import get_tied_dropout, tied_dropout_mode
from hf_memmit.trainers.tied_dropout.memsinks import (
    PAD_SEQ_ID,
    MemSinksCollator,
    MemSinksConfig,
    MemSinksTrainer,
    document_attention_mask,
    document_id,
)

MODELS = {"gpt2": tiny_gpt2, "llama": tiny_llama}


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def _docs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in (5, 7, 4, 6)]


# ---- config and ids ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [("g", 0.0), ("g", 1.2), ("p", 0), ("p", 3.0)])
def test_config_rejects_out_of_range(field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        MemSinksConfig(**{field: value})
    with pytest.raises(ValueError, match="eval_mode"):
        MemSinksConfig(eval_mode="sinks")


def test_document_ids_hash_tokens():
    a, b = [5, 6, 7, 8], [5, 6, 7, 9]
    assert document_id(a) == document_id(list(a)) == document_id(torch.tensor(a).tolist())
    assert document_id(a) != document_id(b)  # a near-duplicate gets an unrelated id
    assert document_id([1, 2, 3]) == 3817744674624027255  # pinned: ids must not change between releases
    assert all(document_id([i]) > PAD_SEQ_ID for i in range(2000))


def test_nonpositive_given_ids_rejected():
    collator = MemSinksCollator()
    for bad in (0, -4):
        with pytest.raises(ValueError, match=str(bad)):
            collator([{"input_ids": [1, 2, 3], "seq_id": bad}])


# ---- collator and packing ----------------------------------------------------------------------------------

def test_packing_carries_ids_positions_and_labels():
    a, b, c, _ = _docs()
    batch = MemSinksCollator(pad_token_id=0, block_size=8, pack=True)(
        [{"input_ids": a}, {"input_ids": b}, {"input_ids": a}, {"input_ids": c, "seq_id": 42}])
    ids = batch["seq_ids"]
    ia, ib = document_id(a), document_id(b)
    stream = [ia] * 5 + [ib] * 7 + [ia] * 5 + [42] * 4  # 21 tokens -> 3 rows of 8, 3 pads
    assert ids.flatten().tolist() == stream + [PAD_SEQ_ID] * 3
    assert batch["input_ids"].flatten().tolist() == a + b + a + c + [0] * 3
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert batch["position_ids"][1].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]  # b's tail restarts; a's copy too
    labels = batch["labels"]
    assert labels[0, 0] == -100 and labels[0, 5] == -100  # no document predicts another's first token
    assert labels[0, 1:5].tolist() == a[1:] and labels[2, 5:].tolist() == [-100] * 3
    assert batch["attention_mask"].shape == (3, 1, 8, 8)


def test_unpacked_rows_pad_to_longest():
    a, b, *_ = _docs()
    batch = MemSinksCollator(pad_token_id=0)([{"input_ids": a}, {"input_ids": b}])
    assert batch["input_ids"].shape == (2, 7)
    assert batch["seq_ids"][0].tolist() == [document_id(a)] * 5 + [PAD_SEQ_ID] * 2
    assert batch["labels"][0, 5:].tolist() == [-100, -100]


def test_attention_mask_is_causal_and_within_document():
    seg = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2]])
    mask = document_attention_mask(seg)[0, 0]
    for i in range(8):
        for j in range(8):
            assert bool(mask[i, j]) == (j <= i and seg[0, i] == seg[0, j])


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_documents_are_isolated(arch, attn):
    """Each document's logits in a packed row equal its logits alone; changing other documents or the future
    changes nothing: no token sees another document or a later token."""
    model = MODELS[arch]()
    model.config._attn_implementation = attn
    docs = _docs()
    collator = MemSinksCollator(pad_token_id=0, block_size=22, pack=True)
    batch = collator([{"input_ids": d} for d in docs])
    assert batch["input_ids"].shape[0] == 1

    def run(b):
        mask = b["attention_mask"]
        if attn == "eager":
            from hf_memmit.trainers.tied_dropout.memsinks.collator import additive_mask

            mask = additive_mask(mask, torch.float32)
        return model(input_ids=b["input_ids"], attention_mask=mask, position_ids=b["position_ids"]).logits[0]

    with torch.no_grad():
        packed = run(batch)
        start = 0
        for d in docs:
            alone = model(torch.tensor([d])).logits[0]
            assert torch.allclose(packed[start:start + len(d)], alone, atol=1e-5)
            start += len(d)
        for k, d in enumerate(docs):  # perturb one document: every other position stays bit-identical
            changed = [list(x) for x in docs]
            changed[k] = [(t % (VOCAB - 1)) + 1 for t in d]
            other = run(collator([{"input_ids": x} for x in changed]))
            lo = sum(map(len, docs[:k]))
            keep = torch.ones(len(packed), dtype=torch.bool)
            keep[lo:lo + len(d)] = False
            assert torch.equal(other[keep], packed[keep])
            assert not torch.allclose(other[~keep], packed[~keep])
        future = batch["input_ids"].clone()  # the future within a document is invisible too
        future[0, 3] = (future[0, 3] % (VOCAB - 1)) + 1
        again = run({**batch, "input_ids": future})
        assert torch.equal(again[:3], packed[:3])


# ---- trainer ------------------------------------------------------------------------------------------------

def _doc_dataset(n=12, repeat=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    docs = [torch.randint(1, VOCAB, (int(torch.randint(6, 12, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]
    return Dataset.from_dict({"input_ids": docs[:2] * repeat + docs[2:], "source": ["x"] * (n - 2 + 2 * repeat)})


def _args(tmp_path, **kw):
    base = {"output_dir": str(tmp_path), "per_device_train_batch_size": 4, "num_train_epochs": 1,
            "learning_rate": 1e-2, "report_to": "none", "save_strategy": "no", "logging_steps": 1, "use_cpu": True,
            "seed": 0, "disable_tqdm": True, "dataloader_num_workers": 0}
    return TrainingArguments(**{**base, **kw})


def _collator():
    return MemSinksCollator(pad_token_id=0, block_size=16, pack=True)


def test_trainer_without_seq_ids_raises(tmp_path):
    def plain(features):
        ids = torch.tensor([f["input_ids"][:6] for f in features])
        return {"input_ids": ids, "labels": ids.clone()}

    trainer = MemSinksTrainer(model=tiny_gpt2().train(), args=_args(tmp_path), train_dataset=_doc_dataset(),
                              data_collator=plain)
    with pytest.raises(ValueError, match="no 'seq_ids'"):
        trainer.train()


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_trainer_trains_and_evaluates(tmp_path, arch):
    model = MODELS[arch]().train()
    trainer = MemSinksTrainer(model=model, args=_args(tmp_path), train_dataset=_doc_dataset(),
                              eval_dataset=_doc_dataset(seed=1), data_collator=_collator(),
                              method_config=MemSinksConfig(g=0.5, p=0.3))
    td = trainer.tied_dropout
    calls = []
    unit_mask = td.unit_mask
    td.unit_mask = lambda keys, layer=0: (calls.append(layer), unit_mask(keys, layer))[1]
    trainer.train()
    assert trainer.state.global_step == 4
    assert calls == [0] * 4  # one mask computation per batch, reused by both layers
    assert math.isfinite(trainer.evaluate()["eval_loss"])
    assert model.config.tied_dropout["p_gen"] == 0.5  # saved with the model


def test_trainer_uses_default_collator_and_keeps_id_column(tmp_path):
    ds = _doc_dataset().add_column("seq_id", list(range(5, 5 + 16)))
    trainer = MemSinksTrainer(model=tiny_gpt2().train(), args=_args(tmp_path), train_dataset=ds)
    seen = []
    set_keys = trainer.tied_dropout.set_keys
    trainer.tied_dropout.set_keys = lambda k: (seen.append(k) if k is not None else None, set_keys(k))
    trainer.train()
    used = set(torch.cat([k.flatten() for k in seen]).tolist()) - {PAD_SEQ_ID}
    assert used == set(range(5, 21))  # the given ids survived remove_unused_columns


def test_resume_reproduces_masks_and_weights(tmp_path):
    def run(out, resume=None):
        model = tiny_llama(seed=3).train()
        trainer = MemSinksTrainer(model=model, args=_args(out, max_steps=4, save_strategy="steps", save_steps=2),
                                  train_dataset=_doc_dataset(), data_collator=_collator())
        seen = []
        set_keys = trainer.tied_dropout.set_keys
        trainer.tied_dropout.set_keys = lambda k: (seen.append(k.tolist()) if k is not None else None, set_keys(k))
        trainer.train(resume_from_checkpoint=resume)
        return seen, torch.cat([p.detach().flatten() for p in model.parameters()])

    full_keys, full_weights = run(tmp_path / "full")
    resumed_keys, resumed_weights = run(tmp_path / "again", resume=str(tmp_path / "full" / "checkpoint-2"))
    assert len(full_keys) == 4 and resumed_keys == full_keys[2:]
    assert torch.allclose(full_weights, resumed_weights, atol=1e-6)


# ---- metrics ------------------------------------------------------------------------------------------------

def test_document_losses_and_gap_metrics():
    model = tiny_gpt2()
    docs = _docs()
    per_doc = document_losses(model, docs, batch_size=3)
    for d, loss in zip(docs, per_doc["loss"]):
        ids = torch.tensor([d])
        with torch.no_grad():
            want = model(ids, labels=ids).loss.item()
        assert loss == pytest.approx(want, rel=1e-5)
    tokens = sum(len(d) - 1 for d in docs)
    assert mean_document_loss(model, docs) == pytest.approx(
        sum(lo * (len(d) - 1) for lo, d in zip(per_doc["loss"], docs)) / tokens, rel=1e-6)
    assert memorization_gap(l_heldout=3.0, l_repeated=1.0) == 2.0
    assert gap_closure(gap_method=0.5, gap_standard=2.0) == 0.75
    with pytest.raises(ValueError, match="gap_standard"):
        gap_closure(gap_method=0.5, gap_standard=0.0)


def test_seq_mode_losses_need_and_use_keys():
    model = tiny_gpt2()
    td = get_tied_dropout_attached(model)
    docs = _docs()
    ids = [document_id(d) for d in docs]
    with td.mode("seq"):
        seq = document_losses(model, docs, batch_context=lambda idx: td.keys([ids[i] for i in idx]))["loss"]
        with pytest.raises(RuntimeError, match="needs the keys"):
            document_losses(model, docs)
    with tied_dropout_mode(model, "drop"):
        drop = document_losses(model, docs)["loss"]
    assert seq != drop
    # one document the model reproduces by construction (its own greedy continuation), one it does not
    extractable = _greedy_document(model, [1, 2, 3, 4], 8)
    long_docs = [extractable, [3] * 12, [2, 3]]
    assert not _reproduces(model, [3] * 12, k=4, l=4)
    res = kl_memorization(model, long_docs, k=4, l=4)
    assert res == {"fraction": 0.5, "memorized": 1, "total": 2, "skipped": 1, "k": 4, "l": 4}
    with td.mode("seq"):
        keyed = kl_memorization(model, long_docs, k=4, l=4, batch_context=lambda idx: td.keys([7] * len(idx)))
        with td.keys([7]):
            expected = [_reproduces(model, d, k=4, l=4) for d in long_docs[:2]]
    assert keyed["total"] == 2 and keyed["memorized"] == sum(expected)
    json.dumps(res)


def _greedy_document(model, prompt, n):
    ids = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(n):
            ids = torch.cat([ids, model(ids).logits[:, -1:].argmax(-1)], dim=1)
    return ids[0].tolist()


def _reproduces(model, doc, *, k, l):
    """Teacher-forced greedy check written out: the argmax at positions k-1 .. k+l-2 is the next token."""
    ids = torch.tensor([doc[: k + l]])
    with torch.no_grad():
        pred = model(ids).logits[0, k - 1: k + l - 1].argmax(-1)
    return bool((pred == ids[0, k:]).all())


def get_tied_dropout_attached(model):
    from hf_memmit.trainers.tied_dropout import attach_tied_dropout

    attach_tied_dropout(model, MemSinksConfig(g=0.5, p=0.3).to_tied())
    return get_tied_dropout(model)
