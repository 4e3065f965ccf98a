"""Scores -> a keep-mask: the top-k units per layer or globally, refusing a selection of zero units and
warning when the cut falls inside a tie. Dropping a unit multiplies it by 0 at every position, the same as
zeroing its slice of the down-projection weight (the bias is untouched)."""

from __future__ import annotations

import warnings

import torch

from .config import NeuronMethodConfig
from .units import Units


def n_dropped(config: NeuronMethodConfig, units: Units) -> int:
    """Units dropped per scored block (per_layer) or in total (global); refuses a selection of zero."""
    rows = units.scored(config)
    if not rows:
        raise ValueError("skip_first_layer=True leaves no block to mask (the only masked block is block 0); "
                         "allowed: skip_first_layer=False or a model with more blocks")
    if config.selection == "per_layer":
        k, what = int(config.ratio * units.d_ff), f"floor({config.ratio} * d_ff {units.d_ff}) = {{k}} units per layer"
        minimum = 1 / units.d_ff
    else:
        total = units.d_ff * len(rows)
        k, what = int(config.ratio * total), f"floor({config.ratio} * {total} scored units) = {{k}} units in total"
        minimum = 1 / total
    if k == 0:
        raise ValueError(f"{config.method}: ratio={config.ratio} selects {what.format(k=k)}, so the adapter would "
                         f"change nothing; allowed: ratio >= {minimum:.3g} (1 / {round(1 / minimum)})")
    return k


def top_units(scores: torch.Tensor, config: NeuronMethodConfig, units: Units) -> torch.Tensor:
    """Keep-mask [n_layer, d_ff] (bool) dropping the highest scores (ties: the lower unit index first)."""
    k = n_dropped(config, units)
    rows = units.scored(config)
    keep = torch.ones(len(units.blocks), units.d_ff, dtype=torch.bool)
    sub = scores[rows].float().cpu()
    if not torch.isfinite(sub).all():
        raise ValueError(f"{config.method}: the neuron scores contain non-finite values; the forget rows or the "
                         "hyperparameters (lr, lambda) make the scoring diverge")
    groups = sub if config.selection == "per_layer" else sub.reshape(1, -1)
    ordered, order = torch.sort(groups, dim=1, descending=True, stable=True)
    drop = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, order[:, :k], True).view(sub.shape)
    _warn_on_boundary_ties(config, ordered, k, [units.blocks[r] for r in rows])
    keep[rows] = ~drop
    return keep


def _warn_on_boundary_ties(config: NeuronMethodConfig, ordered: torch.Tensor, k: int, blocks: list[int]) -> None:
    """Say so when the k-th and (k+1)-th scores of a selection group are equal up to float noise (1e-6 of the
    group's largest |score|): which tied units go is then decided by unit index or rounding, not by the method."""
    if k >= ordered.shape[1]:
        return
    tol = 1e-6 * ordered.abs().amax(dim=1)
    tied = ((ordered[:, k - 1] - ordered[:, k]) <= tol).nonzero().squeeze(1).tolist()
    if not tied:
        return
    g = tied[0]
    value = ordered[g, k - 1]
    close = (ordered[g] - value).abs() <= tol[g]
    n_tied, slots = int(close.sum()), int(close[:k].sum())
    where = f"block {blocks[g]}" if config.selection == "per_layer" else "the global ranking"
    warnings.warn(
        f"{config.method}: the top-{k} cut falls inside a tie in {len(tied)} of {ordered.shape[0]} selection "
        f"group(s) (e.g. {where}: {n_tied} units share the score {float(value):.6g} for {slots} slots); "
        "which of them are dropped is arbitrary. Widely tied scores carry no ranking there (Slim/HC: every "
        "gate moved alike, e.g. lambda too large for the model; lower lambda or lr*epochs)",
        stacklevel=3,
    )
