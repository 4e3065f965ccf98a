"""Loss-gap metrics of MemSinks (Ghosal et al. 2025, "Memorization Sinks") and (k, l) memorization of repeated
documents.

- `L_rep`: mean per-token NLL on the repeated documents; `L_ho`: the same on held-out documents of the same
  distribution; `L_val`: on a general validation set. Token-weighted means; each document is scored alone
  (its own row, from its first token).
- Memorization gap `G = L_ho - L_rep`; gap closure of a method against standard training
  `1 - G_method / G_standard` (the paper's headline: MemSinks with sinks dropped closes >= 0.5).
- Generation-based (k, l) memorization of the repeated documents through `measure_memorization`.

Model modes (sinks on, dropped, own sequence) are the caller's: wrap calls in the model's mode context;
`batch_context(doc_indices)` may return a context manager entered around each batch (per-batch keys).
"""

from __future__ import annotations

import contextlib
import math

import torch

from ..utils import device_of
from .cross_entropy import next_token_losses
from .greedy import compute_precision
from .memorization import measure_memorization


def _batches(n: int, batch_size: int):
    return [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]


@torch.no_grad()
def document_losses(model, docs: list[list[int]], *, batch_size: int = 16, pad_token_id: int = 0,
                    batch_context=None) -> dict[str, list]:
    """Per document: mean next-token NLL (`loss`) over its `tokens` (= len - 1) predictions, float32."""
    if not docs or any(len(d) < 2 for d in docs):
        raise ValueError("every document needs at least 2 tokens (one prediction); got an empty or 1-token one")
    device = device_of(model)
    losses, counts = [0.0] * len(docs), [len(d) - 1 for d in docs]
    with compute_precision(model, fp32=True):
        for idx in _batches(len(docs), batch_size):
            width = max(len(docs[i]) for i in idx)
            ids = torch.full((len(idx), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, : len(docs[i])], mask[r, : len(docs[i])] = torch.tensor(docs[i]), 1
            ids, mask = ids.to(device), mask.to(device)
            with batch_context(idx) if batch_context else contextlib.nullcontext():
                logits = model(input_ids=ids, attention_mask=mask).logits.float()
            nll = next_token_losses(logits, ids) * mask[:, 1:]
            for r, i in enumerate(idx):
                losses[i] = float(nll[r].sum()) / counts[i]
    return {"loss": losses, "tokens": counts}


def mean_document_loss(model, docs: list[list[int]], **kwargs) -> float:
    """Token-weighted mean NLL over all documents (L_rep, L_ho or L_val)."""
    out = document_losses(model, docs, **kwargs)
    return sum(lo * n for lo, n in zip(out["loss"], out["tokens"])) / sum(out["tokens"])


def memorization_gap(l_heldout: float, l_repeated: float) -> float:
    """G = L_ho - L_rep: how much lower the loss is on the repeated documents than on unseen ones."""
    return l_heldout - l_repeated


def gap_closure(gap_method: float, gap_standard: float) -> float:
    """1 - G_method / G_standard: the share of standard training's memorization gap the method removes."""
    if not gap_standard > 0 or not math.isfinite(gap_standard):
        raise ValueError(f"gap_standard={gap_standard!r} must be a positive number: standard training shows no "
                         "memorization gap to close")
    return 1.0 - gap_method / gap_standard


def closure_row(metrics: dict, standard: dict) -> dict:
    """One row of a gap-closure table: a model's `loss_report` numbers (with `kl_memorized`) against standard
    training's."""
    row = {"L_rep": metrics["L_rep"], "L_ho": metrics["L_ho"], "gap": metrics["gap"], "L_val": metrics["L_val"],
           "gap_closure": gap_closure(metrics["gap"], standard["gap"]),
           "L_val_vs_standard": metrics["L_val"] / standard["L_val"] - 1,
           "kl_memorized": metrics["kl_memorized"]["fraction"]}
    if "L_val_general" in metrics:  # repeated documents from another domain than the general corpus
        row["L_val_general"] = metrics["L_val_general"]
        row["L_val_general_vs_standard"] = metrics["L_val_general"] / standard["L_val_general"] - 1
    return row


CLOSURE_FLOOR = 0.5  # the paper: sinks dropped closes over half of standard training's gap
L_VAL_TOLERANCE = 0.02  # the project's fidelity goal: validation loss within 2% of standard training's


def paper_claims(memsinks: dict, standard: dict, dedup: dict) -> dict:
    """The paper's three claims (Ghosal et al. 2025, "Memorization Sinks") for a sinks-dropped MemSinks model
    against standard training and the dedup baseline; each argument is a `loss_report` dict (`gap`, `L_val`)."""
    closure = gap_closure(memsinks["gap"], standard["gap"])
    return {"gap_closure": closure, "gap_closure_ok": closure >= CLOSURE_FLOOR,
            "L_val_within_2pct": abs(memsinks["L_val"] / standard["L_val"] - 1) <= L_VAL_TOLERANCE,
            "L_val_better_than_dedup": memsinks["L_val"] < dedup["L_val"]}


def kl_memorization(model, docs: list[list[int]], *, k: int = 32, l: int = 32, batch_size: int = 32,
                    batch_context=None) -> dict:
    """(k, l) memorization of documents: greedy decoding from the first k tokens reproduces the next l
    (`measure_memorization`, teacher-forced). Documents shorter than k + l are skipped (counted in
    `skipped`). With `batch_context`, each document is checked alone inside `batch_context([i])`."""
    keep = [i for i, d in enumerate(docs) if len(d) >= k + l]
    if not keep:
        raise ValueError(f"no document has the k + l = {k + l} tokens the check needs")
    rows = [{"input_ids": list(docs[i][: k + l])} for i in keep]
    opts = {"target_length": l, "prompt_length": k}
    if batch_context is None:
        flags = measure_memorization(model, rows, batch_size=batch_size, **opts).flags
    else:
        flags = []
        for i, row in zip(keep, rows):
            with batch_context([i]):
                flags += measure_memorization(model, [row], batch_size=1, **opts).flags
    return {"fraction": sum(flags) / len(flags), "memorized": sum(flags), "total": len(flags),
            "skipped": len(docs) - len(keep), "k": k, "l": l}


def loss_report(model, repeated, heldout, validation=None, **kwargs) -> dict[str, float]:
    """L_rep, L_ho, G (and L_val when `validation` documents are given) of `model` in its current mode.
    `batch_context` in kwargs gets indices into each document list in turn, tagged by `which`."""
    context = kwargs.pop("batch_context", None)

    def loss(docs, which):
        ctx = (lambda idx: context(which, idx)) if context else None
        return mean_document_loss(model, docs, batch_context=ctx, **kwargs)

    out = {"L_rep": loss(repeated, "repeated"), "L_ho": loss(heldout, "heldout")}
    out["gap"] = memorization_gap(out["L_ho"], out["L_rep"])
    if validation is not None:
        out["L_val"] = loss(validation, "validation")
    return out


__all__ = ["closure_row", "document_losses", "gap_closure", "kl_memorization", "loss_report", "mean_document_loss",
           "memorization_gap"]
