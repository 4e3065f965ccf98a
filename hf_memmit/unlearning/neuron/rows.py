"""Forget rows as the neuron-level methods score them: the scored positions (after `prefix_len`), suffix
losses, and the last logits of a row."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import torch
from peft import PeftModel
from torch import nn
from tqdm.auto import tqdm

from ...utils import device_of
from ..data import Rows, index_batches, n_batches, row_losses


def causal_lm(model) -> nn.Module:
    return model.get_base_model() if isinstance(model, PeftModel) else model


def target_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, prefix_len: int) -> torch.Tensor:
    """Bool [B, T-1]: position t is scored iff it predicts a real token t+1 >= prefix_len."""
    valid = torch.zeros(input_ids.shape[0], input_ids.shape[1] - 1, dtype=torch.bool, device=input_ids.device)
    valid[:, prefix_len - 1:] = True
    if attention_mask is not None:
        valid &= attention_mask[:, 1:].bool() & attention_mask[:, :-1].bool()
    return valid


def check_rows(rows: Rows, prefix_len: int) -> None:
    length = rows.input_ids.shape[1]
    if prefix_len >= length:
        raise ValueError(f"prefix_len={prefix_len} leaves no token to score in rows of {length} tokens; allowed: "
                         f"1 <= prefix_len <= {length - 1}")
    counts = target_mask(rows.input_ids, rows.attention_mask, prefix_len).sum(dim=1)
    if (counts == 0).any():
        bad = int((counts == 0).nonzero()[0])
        raise ValueError(f"forget row {bad} has no scored token after prefix_len={prefix_len} (padding); allowed: "
                         "rows with at least one real token after the prefix")


def last_logits(model, n: int, **inputs) -> torch.Tensor:
    """The logits of the last `n` positions [B, n, V]. Asks the model for only those (`logits_to_keep`) when its
    forward accepts it: the LM head over a large vocabulary dominates memory otherwise."""
    lm = causal_lm(model)
    if "logits_to_keep" in inspect.signature(lm.forward).parameters:
        inputs["logits_to_keep"] = n
    return lm(**inputs, use_cache=False).logits[:, -n:]


def suffix_losses(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                  prefix_len: int) -> torch.Tensor:
    """Mean next-token cross-entropy of each row [B] over the scored positions (see `target_mask`): the shared
    memory-bounded `row_losses` on the causal LM (a PeftModel's active adapters included)."""
    device = device_of(model)
    input_ids = input_ids.to(device)
    attention_mask = None if attention_mask is None else attention_mask.to(device)
    valid = target_mask(input_ids, attention_mask, prefix_len)
    return row_losses(causal_lm(model), input_ids, attention_mask, valid=valid)


def row_batches(rows: Rows, batch_size: int, desc: str, progress: bool) -> Iterator[torch.Tensor]:
    """Row indices of one pass over the forget rows, with a tqdm bar."""
    yield from tqdm(index_batches(len(rows), batch_size), total=n_batches(len(rows), batch_size), desc=desc,
                    disable=not progress)
