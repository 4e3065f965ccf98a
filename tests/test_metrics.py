"""The memorization check: exact answers on hand-built models, agreement with `generate` on a trained
TinyMem model, and the same numbers from the function, the `evaluate` metric and the Trainer callback."""

import copy
import math
import random
import types

import datasets
import evaluate
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

from hf_memmit.metrics import (MEMORIZATION_METRIC_PATH, Memorization, MemorizationCallback, artifact_pairs,
                               greedy_match, greedy_match_generate, match_tokens, measure_memorization, perplexity,
                               token_accuracy)

V = 12  # vocabulary of the hand-built models; token 0 is their EOS


@pytest.fixture(autouse=True)
def _one_thread(request):
    """Tiny models run much faster single-threaded on 2 busy cores; the trained-model tests keep all threads."""
    if "tiny_trained" in request.fixturenames:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- hand-built models with known answers

def successor_gpt2() -> GPT2LMHeadModel:
    """A real GPT-2 whose greedy next token is always (last token + 1) % V: blocks output zero (residual
    only), embeddings are one-hot, lm_head a cyclic shift. EOS (0) is an ordinary successor of V - 1."""
    cfg = GPT2Config(vocab_size=V, n_embd=16, n_layer=1, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0,
                     pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=False)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for block in model.transformer.h:
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                proj.weight.zero_()
                proj.bias.zero_()
        model.transformer.wpe.weight.zero_()
        model.transformer.wte.weight.copy_(4 * torch.eye(V, 16))
        model.lm_head.weight.copy_(torch.eye(V, 16).roll(1, 0))
    return model


def successor_llama() -> LlamaForCausalLM:
    """The same function built from Llama parts (RMSNorm, rotary, gated MLP, nn.Linear)."""
    cfg = LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=64, bos_token_id=0, eos_token_id=0,
                      pad_token_id=0, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.copy_(4 * torch.eye(V, 16))
        model.lm_head.weight.copy_(torch.eye(V, 16).roll(1, 0))
    return model


class ShiftModel(nn.Module):
    """A hand-built LM that is not a transformers model: next token = (token + shift) % V. Its forward takes
    no position_ids (so the check pads on the right) and records the shape of every batch it sees."""

    def __init__(self, shift: int = 1):
        super().__init__()
        self.shift, self.embed, self.calls = shift, nn.Embedding(V, 1), []

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids, attention_mask=None):
        self.calls.append(tuple(input_ids.shape))
        return types.SimpleNamespace(logits=F.one_hot((input_ids + self.shift) % V, V).float())


def random_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=0,
                                       eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    with torch.no_grad():  # GPT-2's small init gives near-uniform logits; larger weights give clear argmaxes
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5)
    return model


def random_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                                        bos_token_id=0, eos_token_id=0, pad_token_id=0,
                                        tie_word_embeddings=False)).eval()


def chain(start: int, n: int) -> list[int]:
    return [(start + 1 + j) % V for j in range(n)]


def successor_rows(n: int, seed: int = 0):
    """Variable-length prompts; even rows' targets are the successor chain, odd rows' have one token changed."""
    rng = random.Random(seed)
    prompts, targets = [], []
    for i in range(n):
        prompt = [rng.randrange(V) for _ in range(rng.randint(1, 10))]
        target = chain(prompt[-1], rng.randint(1, 8))
        if i % 2:
            j = rng.randrange(len(target))
            target[j] = (target[j] + rng.randint(1, V - 1)) % V
        prompts.append(prompt)
        targets.append(target)
    return prompts, targets


def successor_answer(prompt, target):
    """Teacher-forced: position j sees the true token before it and predicts its successor."""
    before = [prompt[-1]] + target[:-1]
    hits = [t == (b + 1) % V for b, t in zip(before, target)]
    return all(hits), sum(hits) / len(hits), [(b + 1) % V for b in before]


def own_continuations(model, prompts, seed: int = 0):
    """Each prompt's greedy continuation from an unbatched, unpadded `generate` (an independent reference),
    cut to a random length; odd rows get their last token changed (negatives)."""
    rng, targets = random.Random(seed), []
    for i, p in enumerate(prompts):
        out = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                             max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
        t = out[0, len(p):len(p) + rng.randint(1, 8)].tolist()
        if i % 2:
            t[-1] = (t[-1] + 1) % V
        targets.append(t)
    return targets


# ---------------------------------------------------------------- the core check

@pytest.mark.parametrize("make", [successor_gpt2, successor_llama, ShiftModel], ids=["gpt2", "llama", "module"])
def test_exact_answers_on_a_model_that_copies(make):
    prompts, targets = successor_rows(40)
    got = greedy_match(make(), prompts, targets, batch_size=8)
    want = [successor_answer(p, t) for p, t in zip(prompts, targets)]
    assert got.exact.tolist() == [w[0] for w in want]
    assert got.token_match.tolist() == pytest.approx([w[1] for w in want])
    assert got.predictions == [w[2] for w in want]
    assert got.summary()["memorized"] == 20 and got.summary()["memorized_fraction"] == 0.5


def test_a_model_that_never_copies_memorizes_nothing():
    prompts, targets = successor_rows(20)
    got = greedy_match(ShiftModel(shift=0), prompts, targets)  # always repeats the last token
    assert not got.exact.any() and got.summary()["memorized_fraction"] == 0.0


@pytest.mark.parametrize("make", [successor_gpt2, successor_llama], ids=["gpt2", "llama"])
def test_eos_inside_the_target(make):
    model = make()
    prompts, targets = [[9, 10], [5]], [[11, 0, 1, 2], [6, 7]]  # the first target runs through EOS (0)
    assert greedy_match(model, prompts, targets).exact.tolist() == [True, True]
    assert greedy_match_generate(model, prompts, targets).exact.tolist() == [True, True]
    # the reference's call bans EOS with min_length, so it can never reproduce such a target
    out = model.generate(torch.tensor([[9, 10]]), max_length=6, min_length=6, pad_token_id=0)
    assert out[0, 2:].tolist() != targets[0]


@pytest.mark.parametrize("make", [random_gpt2, random_llama], ids=["gpt2", "llama"])
def test_teacher_forced_agrees_with_generate_on_random_models(make):
    model = make()
    rng = random.Random(1)
    prompts = [[rng.randrange(V) for _ in range(rng.randint(1, 12))] for _ in range(30)]
    targets = own_continuations(model, prompts)
    tf = greedy_match(model, prompts, targets, batch_size=7)
    gen = greedy_match_generate(model, prompts, targets, batch_size=7)
    assert tf.exact.tolist() == gen.exact.tolist() == [i % 2 == 0 for i in range(30)]


@pytest.mark.parametrize("make", [random_gpt2, random_llama], ids=["gpt2", "llama"])
def test_padding_side_and_batching_do_not_change_the_answer(make):
    model = make()
    rng = random.Random(2)
    prompts = [[rng.randrange(V) for _ in range(rng.randint(1, 12))] for _ in range(25)]
    targets = [[rng.randrange(V) for _ in range(rng.randint(1, 9))] for _ in range(25)]
    runs = [greedy_match(model, prompts, targets, batch_size=bs, padding_side=side)
            for bs, side in [(1, "left"), (6, "left"), (6, "right"), (25, "right")]]
    for run in runs[1:]:
        assert run.exact.tolist() == runs[0].exact.tolist()
        assert run.predictions == runs[0].predictions
        assert torch.equal(run.token_match, runs[0].token_match)
    with pytest.raises(ValueError, match="padding_side='middle'"):
        greedy_match(model, prompts, targets, padding_side="middle")
    with pytest.raises(ValueError, match="position_ids"):
        greedy_match(ShiftModel(), prompts, targets, padding_side="left")


def test_memory_is_bounded_by_the_batch_size():
    prompts, targets = successor_rows(50)
    shift = ShiftModel()
    greedy_match(shift, prompts, targets, batch_size=8)
    assert len(shift.calls) == 7 and max(b for b, _ in shift.calls) <= 8
    model, kept = successor_gpt2(), []
    model.register_forward_hook(lambda mod, args, out: kept.append(tuple(out.logits.shape)))
    prompts = [p * 5 for p in prompts]  # long prompts: only the target logits may be computed
    greedy_match(model, prompts, targets, batch_size=8)
    assert len(kept) == 7 and all(b <= 8 and n <= 8 and v == V for b, n, v in kept)


def test_empty_and_malformed_inputs_raise_clear_errors():
    model = successor_gpt2()
    for check in (greedy_match, greedy_match_generate):
        with pytest.raises(ValueError, match="empty"):
            check(model, [], [])
        with pytest.raises(ValueError, match="2 prompts but 1 targets"):
            check(model, [[1], [2]], [[3]])
        with pytest.raises(ValueError, match="at least one token"):
            check(model, [[]], [[3]])
        with pytest.raises(ValueError, match="batch_size=0"):
            check(model, [[1]], [[2]], batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        measure_memorization(model, [])
    with pytest.raises(ValueError, match="empty"):
        match_tokens([], [])
    with pytest.raises(ValueError, match="method='beam'"):
        measure_memorization(model, [{"input_ids": list(range(10))}], prompt_length=5, target_length=5,
                             method="beam")
    with pytest.raises(TypeError, match="no `generate`"):
        greedy_match_generate(ShiftModel(), [[1]], [[2]])


def test_mismatched_vocabulary_is_rejected():
    model = successor_gpt2()
    with pytest.raises(ValueError, match=r"token id 50256 is outside the model's vocabulary \[0, 12\).*tokenizer"):
        greedy_match(model, [[1, 50256]], [[2]])
    with pytest.raises(ValueError, match="token id -100 is outside"):
        greedy_match(model, [[1]], [[2, -100]])
    with pytest.raises(ValueError, match="token id 13 is outside"):
        measure_memorization(model, [{"input_ids": [13] * 10}], prompt_length=5, target_length=5)


@pytest.mark.parametrize("make", [random_gpt2, random_llama], ids=["gpt2", "llama"])
def test_fp32_computes_in_float32_and_restores_a_half_model(make):
    full = make()
    rng = random.Random(3)
    prompts = [[rng.randrange(V) for _ in range(rng.randint(1, 12))] for _ in range(20)]
    targets = own_continuations(full, prompts)
    model = full.to(torch.bfloat16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reference = greedy_match(copy.deepcopy(model).float(), prompts, targets)
    dtypes = []
    model.register_forward_hook(lambda mod, args, out: dtypes.append(out.logits.dtype))
    got = greedy_match(model, prompts, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # an enclosing autocast is switched off
        in_autocast = greedy_match(model, prompts, targets)
    for run in (got, in_autocast):
        assert run.predictions == reference.predictions and torch.equal(run.token_match, reference.token_match)
    assert set(dtypes) == {torch.float32}
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    greedy_match(model, prompts, targets, fp32=False)
    assert dtypes[-1] == torch.bfloat16
    with torch.inference_mode():
        greedy_match(model, prompts, targets)
    assert not any(p.is_inference() for p in model.parameters())  # still trainable afterwards


@pytest.mark.parametrize("make", [random_gpt2, random_llama], ids=["gpt2", "llama"])
def test_fp32_head_keeps_the_body_in_bf16_and_the_logits_in_float32(make):
    """fp32="head": float32 logits from the bf16 body's last hidden states, through a float32 final norm; the
    weights (the output embedding possibly tied to the input one) and the head's forward are restored after."""
    model = make().to(torch.bfloat16)
    rng = random.Random(4)
    prompts = [[rng.randrange(V) for _ in range(6)] for _ in range(8)]
    targets = [[rng.randrange(V) for _ in range(4)] for _ in range(8)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = {}

    def record(key, of=lambda out: out):
        def hook(module, args, out):
            seen.setdefault(key, of(out).dtype)
        return hook

    decoder = model.get_decoder()
    first_block = decoder.layers[0] if hasattr(decoder, "layers") else decoder.h[0]
    first_block.register_forward_hook(record("body", lambda out: out[0] if isinstance(out, tuple) else out))
    (decoder.norm if hasattr(decoder, "norm") else decoder.ln_f).register_forward_hook(record("norm"))
    model.register_forward_hook(record("logits", lambda out: out.logits))
    got = greedy_match(model, prompts, targets, fp32="head")
    assert seen == {"body": torch.bfloat16, "norm": torch.float32, "logits": torch.float32}
    assert len(got.predictions) == 8
    seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # an enclosing autocast is switched off here too
        assert greedy_match(model, prompts, targets, fp32="head").predictions == got.predictions
    assert seen == {"body": torch.bfloat16, "norm": torch.float32, "logits": torch.float32}
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    assert "forward" not in vars(model.get_output_embeddings())
    with pytest.raises(ValueError, match="fp32='fp16' is not supported; allowed: True, False, 'head'"):
        greedy_match(model, prompts, targets, fp32="fp16")


def test_match_tokens_scores_short_and_long_predictions():
    got = match_tokens([[1, 2, 3, 9, 9], [4, 5], [7, 8, 0]], [[1, 2, 3], [4, 5, 6], [7, 8, 6]])
    assert got.exact.tolist() == [True, False, False]
    assert got.token_match.tolist() == pytest.approx([1.0, 2 / 3, 2 / 3])
    with pytest.raises(ValueError, match=">= 0"):
        match_tokens([[1]], [[-100]])


# ---------------------------------------------------------------- artifact-aware views

def _row(id, ids, clean=None, artifact="none", k=4, dup=0):
    return {"id": id, "task": "t", "input_ids": ids, "clean_input_ids": clean or ids, "artifact": artifact,
            "prompt_length": k, "dup_class": dup}


def test_views_on_hand_built_rows():
    model = successor_gpt2()  # continues any prefix ending in x with x+1, x+2, ...
    clean = [5, 1, 7, 3, 9, 9, 9, 9, 2, 2]
    rows = [
        # noise: the noised window is what the model produces from the clean prefix -> memorized
        _row("noise-mem", clean[:4] + chain(3, 4) + clean[8:], clean, "noise", dup=1),
        # noise: the clean window is what it produces -> continues cleanly, not memorized
        _row("noise-clean", [5, 1, 7, 3, 4, 9, 6, 7, 0, 0], [5, 1, 7, 3, 4, 5, 6, 7, 0, 0], "noise", dup=1),
        # noise outside the window: does not qualify
        _row("noise-outside", clean[:9] + [3], clean, "noise"),
        # backdoor: prompt up to the trigger, target the fill (here the model's own chain) -> memorized
        _row("backdoor", [1, 2] + chain(2, 8), [1, 2, 8, 8, 8, 8, 8, 8, 8, 8], "backdoor", k=2),
        # a user's own sequence the model does not continue
        _row("generic", [6, 6, 6, 6, 1, 1, 1, 1, 1, 1]),
    ]
    res = measure_memorization(model, rows, target_length=4)
    assert res.qualifying == [True, True, False, True, True]
    assert res.flags == [True, False, False, True, False]
    assert res.clean_flags == [False, True, False, False, False]
    assert (res.memorized, res.total, res.fraction, res.clean_fraction) == (2, 4, 0.5, 0.25)
    assert res.memorized_indices == [0, 3]
    assert res.per_class == {0: {"memorized": 1, "total": 2, "fraction": 0.5},
                             1: {"memorized": 1, "total": 2, "fraction": 0.5}}
    assert artifact_pairs(rows[3], 4)[:2] == ([1, 2], chain(2, 4))
    assert artifact_pairs(rows[0], 4)[0] == clean[:4]
    generic = measure_memorization(model, [{"input_ids": [3, 4, 5, 6, 7, 8]}], prompt_length=2, target_length=3)
    assert generic.flags == [True] and generic.clean_flags == [True]
    # nothing qualifies: a documented 0/0, not a crash
    none = measure_memorization(model, [rows[2]], target_length=4)
    assert math.isnan(none.fraction) and none.to_dict()["fraction"] is None and none.per_class == {}
    with pytest.raises(ValueError, match="too few for k=4 \\+ l=20"):
        measure_memorization(model, rows, target_length=20)


# ---------------------------------------------------------------- accuracy and perplexity

def test_token_accuracy_with_and_without_pads():
    rows = [{"task": "a", "input_ids": [1, 2, 3, 4]}, {"task": "b", "input_ids": [1, 2, 5, 5]}]  # 5 pads row b
    acc = token_accuracy(ShiftModel(), rows, pad_token_id=5)
    assert acc["a"] == {"accuracy": 1.0, "accuracy_no_pad": 1.0}
    assert acc["b"]["accuracy"] == pytest.approx(1 / 3) and acc["b"]["accuracy_no_pad"] == 1.0
    assert acc["average"]["accuracy"] == pytest.approx(2 / 3) and acc["average"]["accuracy_no_pad"] == 1.0
    with pytest.raises(ValueError, match="empty"):
        token_accuracy(ShiftModel(), [])


def test_perplexity_corpus_and_mean_of_batch_exp():
    rows = [{"input_ids": [1, 2, 3, 4]}, {"input_ids": [1, 5, 5, 5]}]  # 3 and 0 right predictions of 3
    z = math.e + V - 1  # one-hot logits: the predicted token has logit 1, the others 0
    right, wrong = -math.log(math.e / z), -math.log(1 / z)
    ppl = perplexity(ShiftModel(), rows, batch_size=1)
    assert ppl["corpus"] == pytest.approx(math.exp((3 * right + 3 * wrong) / 6))
    assert ppl["mean_batch_exp"] == pytest.approx((math.exp(right) + math.exp(wrong)) / 2)


# ---------------------------------------------------------------- evaluate metric and callback

class _RowCount(evaluate.Metric):
    def _info(self):
        tokens = datasets.Sequence(datasets.Value("int64"))
        return evaluate.MetricInfo(description="rows", citation="", inputs_description="",
                                   features=datasets.Features({"predictions": tokens, "references": tokens}))

    def _compute(self, predictions, references):
        return {"rows": len(references)}


def test_evaluate_metric_direct_batched_combined_and_loaded():
    prompts, targets = successor_rows(30)
    match = greedy_match(successor_gpt2(), prompts, targets)
    want = match.summary()
    assert want["memorized_fraction"] == 0.5
    assert Memorization(keep_in_memory=True).compute(predictions=match.predictions, references=targets) == want
    metric = Memorization(keep_in_memory=True)
    metric.add_batch(predictions=match.predictions[:13], references=targets[:13])
    metric.add_batch(predictions=match.predictions[13:], references=targets[13:])
    assert metric.compute() == want
    combined = evaluate.combine([Memorization(keep_in_memory=True), _RowCount(keep_in_memory=True)])
    assert combined.compute(predictions=match.predictions, references=targets) == {**want, "rows": 30}
    loaded = evaluate.load(MEMORIZATION_METRIC_PATH, keep_in_memory=True)
    assert type(loaded) is not Memorization and loaded.name == "memorization"
    assert loaded.compute(predictions=match.predictions, references=targets) == want
    by_model = evaluate.load(MEMORIZATION_METRIC_PATH, "model", keep_in_memory=True)
    assert by_model.compute(prompts=prompts, references=targets, model=successor_gpt2(), batch_size=8) == want
    with pytest.raises(ValueError, match="needs compute"):
        Memorization("model", keep_in_memory=True).compute(prompts=prompts, references=targets)
    with pytest.raises(ValueError, match="config_name='bleu'"):
        Memorization("bleu")


def _callback_trainer(model, tmp_path, callback, steps: int, eval_steps: int):
    data = datasets.Dataset.from_dict({"input_ids": [[1, 2, 3, 4, 5, 6]] * 8}).map(lambda r: {"labels": r["input_ids"]})
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=4,
                             learning_rate=0.0, weight_decay=0.0, eval_strategy="steps", eval_steps=eval_steps,
                             save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
                             logging_steps=1)
    return Trainer(model=model, args=args, train_dataset=data, eval_dataset=data, callbacks=[callback])


def test_callback_logs_every_n_steps_and_at_evaluation(tmp_path):
    rng = random.Random(4)
    rows = [{"input_ids": [rng.randrange(V)] + chain(3, 5) if i % 3 else [rng.randrange(V) for _ in range(6)]}
            for i in range(12)]
    model = successor_gpt2()
    want = measure_memorization(model, rows, prompt_length=2, target_length=4).fraction
    callback = MemorizationCallback(rows, every_steps=2, prompt_length=2, target_length=4)
    trainer = _callback_trainer(model, tmp_path, callback, steps=4, eval_steps=4)
    trainer.train()
    logged = [e for e in trainer.state.log_history if "memorization_fraction" in e]
    assert [e["step"] for e in logged] == [2, 4] and all(e["memorization_fraction"] == want for e in logged)
    evals = [e for e in trainer.state.log_history if "eval_loss" in e]
    assert evals and evals[-1]["eval_memorization_fraction"] == want
    assert trainer.evaluate()["eval_memorization_fraction"] == want
    assert 0 < want < 1
    with pytest.raises(ValueError, match="every_steps=0"):
        MemorizationCallback(rows, every_steps=0)


# ---------------------------------------------------------------- a really trained TinyMem model

@pytest.fixture(scope="module")
def trained_rows(tiny_trained):
    """Rows of the trained model with both answers: every row the teacher-forced check flags (memorized
    noise rows, clean rows continued exactly), the 30 nearest misses (highest token match) and 10 more.
    Selecting by the check under test is fine here: the tests compare it with other paths on these rows."""
    model, dataset, _ = tiny_trained
    rows = [dict(r) for split in ("forget", "test", "retain") for r in dataset[split]]
    result = measure_memorization(model, rows, batch_size=128)
    positives = [i for i, f in enumerate(result.flags) if f]
    misses = sorted((i for i, q in enumerate(result.qualifying) if q and not result.flags[i]),
                    key=lambda i: -result.token_match[i])
    chosen = sorted(set(positives + misses[:30] + misses[::len(misses) // 10][:10]))
    return [rows[i] for i in chosen]


def test_teacher_forced_agrees_with_generate_on_a_trained_model(tiny_trained, trained_rows):
    model = tiny_trained[0]
    tf = measure_memorization(model, trained_rows, batch_size=64)
    gen = measure_memorization(model, trained_rows, batch_size=64, method="generate")
    assert tf.flags == gen.flags and tf.clean_flags == gen.clean_flags and tf.qualifying == gen.qualifying
    assert 0 < tf.memorized < tf.total  # both memorized and not-memorized rows are checked


def test_function_metric_and_callback_agree_on_a_trained_model(tiny_trained, trained_rows, tmp_path):
    model, rows = tiny_trained[0], trained_rows
    result = measure_memorization(model, rows, batch_size=64)
    pairs = [artifact_pairs(r, 50) for r in rows]
    prompts = [p for p, _, _, q in pairs if q]
    targets = [t for _, t, _, q in pairs if q]
    metric = Memorization("model", keep_in_memory=True).compute(prompts=prompts, references=targets, model=model)
    predicted = greedy_match(model, prompts, targets).predictions
    from_predictions = Memorization(keep_in_memory=True).compute(predictions=predicted, references=targets)
    callback = MemorizationCallback(rows, every_steps=1, at_evaluate=False)
    trainer = _callback_trainer(copy.deepcopy(model), tmp_path, callback, steps=1, eval_steps=1)
    trainer.train()
    logged = next(e for e in trainer.state.log_history if "memorization_fraction" in e)
    assert result.memorized > 0
    for values in (metric, from_predictions):
        assert (values["memorized_fraction"], values["memorized"], values["total"]) == (
            result.fraction, result.memorized, result.total)
    assert (logged["memorization_fraction"], logged["memorization_memorized"]) == (result.fraction, result.memorized)


# ---------------------------------------------------------------- CUDA (runs where a GPU is present)

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("make", [random_gpt2, random_llama], ids=["gpt2", "llama"])
def test_cuda_gives_the_cpu_answer(make):
    model = make()
    rng = random.Random(5)
    prompts = [[rng.randrange(V) for _ in range(rng.randint(1, 12))] for _ in range(30)]
    targets = own_continuations(model, prompts)
    cpu = greedy_match(model, prompts, targets)
    cuda = model.cuda()
    assert greedy_match(cuda, prompts, targets).exact.tolist() == cpu.exact.tolist()
    assert greedy_match_generate(cuda, prompts, targets).exact.tolist() == cpu.exact.tolist()
    half = cuda.to(torch.bfloat16)
    assert greedy_match(half, prompts, targets).exact.shape == cpu.exact.shape
    assert next(half.parameters()).dtype == torch.bfloat16
