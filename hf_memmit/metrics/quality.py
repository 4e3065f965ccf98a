"""Accuracy and perplexity: what a mitigation costs (accuracy on math, perplexity on language, as Sakarvadia
et al. 2025, "Mitigating Memorization in Language Models", report it)."""

from __future__ import annotations

import math
from collections import defaultdict

import torch
import torch.nn.functional as F

from ..utils import device_of


def _batches(rows, batch_size):
    rows = [dict(r) for r in rows]
    if not rows:
        raise ValueError("no rows to evaluate: the set is empty")
    for s in range(0, len(rows), batch_size):
        yield rows[s:s + batch_size]


@torch.no_grad()
def _shifted(model, batch):
    ids = torch.tensor([r["input_ids"] for r in batch], device=device_of(model))
    # rows are full blocks: an explicit all-ones mask also spares GPT-2 its padding check on every call
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, :-1].float()
    return logits, ids[:, 1:]


@torch.no_grad()
def token_accuracy(model, rows, *, pad_token_id: int | None = None, batch_size: int = 128) -> dict:
    """Teacher-forced next-token accuracy per task over all shifted positions.

    Returns `{task: {"accuracy": pads included (the paper's number), "accuracy_no_pad": pad targets
    excluded}}` plus `"average"`: the unweighted mean over tasks (the paper's average over the five math tasks).
    """
    was_training = model.training
    model.eval()
    hits, counts = defaultdict(lambda: [0, 0, 0, 0]), {}
    for batch in _batches(rows, batch_size):
        logits, target = _shifted(model, batch)
        correct = logits.argmax(-1) == target
        real = target != pad_token_id if pad_token_id is not None else torch.ones_like(target, dtype=torch.bool)
        for r, c, m in zip(batch, correct, real):
            h = hits[r.get("task", "all")]
            h[0] += int(c.sum()); h[1] += c.numel(); h[2] += int((c & m).sum()); h[3] += int(m.sum())
    model.train(was_training)
    for task, (c, n, cm, nm) in sorted(hits.items()):
        counts[task] = {"accuracy": c / n, "accuracy_no_pad": cm / nm if nm else float("nan")}
    counts["average"] = {key: sum(v[key] for v in counts.values()) / len(counts)
                         for key in ("accuracy", "accuracy_no_pad")}
    return counts


@torch.no_grad()
def perplexity(model, rows, *, batch_size: int = 64) -> dict:
    """`corpus`: exp of the token-mean loss over all rows. `mean_batch_exp`: the reference's mean over
    batches of exp(batch-mean loss), kept for comparison with the paper's numbers."""
    was_training = model.training
    model.eval()
    total, n, batch_ppl = 0.0, 0, []
    for batch in _batches(rows, batch_size):
        logits, target = _shifted(model, batch)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), reduction="sum")
        total += float(loss); n += target.numel()
        batch_ppl.append(math.exp(float(loss) / target.numel()))
    model.train(was_training)
    return {"corpus": math.exp(total / n), "mean_batch_exp": sum(batch_ppl) / len(batch_ppl)}
