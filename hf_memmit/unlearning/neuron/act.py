"""Activations (MemPi `largest_act`, TinyMem `act`): units that fire strongly on the forget rows and write a
large vector into the residual stream."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...utils import check_bool, device_of
from ..data import Rows
from ..registry import register_method
from .config import NeuronMethodConfig
from .rows import last_logits, row_batches, target_mask
from .scores import fit_with_scores
from .units import Units, unit_norms, unit_patch, unscored


@dataclass
class ActConfig(NeuronMethodConfig):
    """Act: s[l, i] = |mean of a[l, t, i]| * ||W_out[:, i]||_2, the absolute value *of the mean* activation
    (not the mean absolute value) over the scored positions t = prefix_len-1 .. T-2 (the positions whose
    outputs predict the scored tokens), times the L2 norm of the unit's down-projection vector.

    Args:
        per_sequence: False (default, TinyMem): one mean over every scored position of every forget row, as if
            the forget set were one batch. True (MemPi): the score of each row on its own, averaged over rows.
        ratio, selection, skip_first_layer, prefix_len, batch_size: see `NeuronMethodConfig`.
    Cost: one forward pass over the forget set. Uses only the forget set.
    """

    method: str = "act"
    per_sequence: bool = field(default=False, metadata={"help": "Score each row alone, then average (MemPi)."})

    def __post_init__(self):
        super().__post_init__()
        check_bool("per_sequence", self.per_sequence)


@torch.no_grad()
def act_scores(model, config: ActConfig, forget: Rows, units: Units, *, progress: bool = True) -> torch.Tensor:
    rows = units.scored(config)
    device = device_of(model)
    sums = torch.zeros(len(units.blocks), units.d_ff, dtype=torch.float64)  # pooled sum, or sum of per-row |means|
    state: dict = {}

    def patch(row, x):
        if row in rows:
            valid = state["valid"].to(x.dtype)  # [B, T-1]: positions 0 .. T-2
            per_row = torch.einsum("bt,btd->bd", valid, x[:, :-1]).double()
            if config.per_sequence:
                sums[row] += (per_row / valid.sum(dim=1, keepdim=True).double()).abs().sum(dim=0).cpu()
            else:
                sums[row] += per_row.sum(dim=0).cpu()

    count = 0
    with unit_patch(units, patch):
        for index in row_batches(forget, config.batch_size, config.method, progress):
            input_ids, mask = forget.batch(index)
            input_ids = input_ids.to(device)
            mask = None if mask is None else mask.to(device)
            state["valid"] = target_mask(input_ids, mask, config.prefix_len)
            count += len(index) if config.per_sequence else int(state["valid"].sum())
            last_logits(model, 1, input_ids=input_ids, attention_mask=mask)  # the hooks read the activations
    means = sums / count
    if not config.per_sequence:
        means = means.abs()
    norms = torch.stack([unit_norms(m).cpu() for m in units.modules]).double()
    scores = unscored(units)
    scores[rows] = (means * norms)[rows].float()
    return scores


def fit_act(model, config: ActConfig, forget, retain, *, adapter_name: str, progress: bool) -> None:
    fit_with_scores(act_scores, model, config, forget, adapter_name=adapter_name, progress=progress)


register_method(ActConfig, fit_act, score=act_scores)
