"""Slimming (MemPi `slim.py` after Liu et al. 2017's network slimming, TinyMem `slim`): learn which units the
forget rows need under an L1 pressure; the units that keep large coefficients are dropped."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...utils import check_positive
from ..data import Rows
from ..registry import register_method
from .gates import Gates, GateTrainingConfig, train_gates
from .scores import fit_with_scores
from .units import Units


@dataclass
class SlimConfig(GateTrainingConfig):
    """Slim: a coefficient m per unit, initialised to 1; the forward uses a * clip(m, 0, 1). Adam on the
    coefficients only (model weights frozen) minimises L(forget rows) + lambda_l1 * mean|m| (the L1 on the
    unclipped m, averaged over the trained units). Scores: the final m; the units the forget rows still need
    keep high coefficients and are the ones dropped. MemPi reports clip(m, 0, 1); ranking by the unclipped m is
    the same ranking except that ties at 1 and at 0 are broken by how far past the clip m went. Those ties are
    common, not rare: above 1 (and below 0) the clip passes no LM gradient, so only the L1 term moves m there,
    and ranking on clip(m) would pick among the tied units by index.

    Defaults are TinyMem's (lr 0.1, lambda 1000, stop_loss 0.1; its epoch grid is 1, 10, 30). MemPi's
    per-model settings (e.g. DEL GPT2-XL: lambda 30000, lr 1e-2, 60 epochs, stop_loss 0.1, per_sequence=True,
    skip_first_layer=True) are reachable through the fields. With Adam each coefficient moves about `lr` per
    step, so epochs * lr sets the final sparsity more than lambda does.

    Args:
        lambda_l1: weight of the L1 term, >= 0 (MemPi/TinyMem `lambda_l1`).
        lr: Adam learning rate, > 0. epochs: passes over the forget rows (per_sequence: steps per row).
        stop_loss: stop once mean|m| < stop_loss, checked every `check_every` steps before the step (TinyMem
            checked every 100, MemPi every 10).
        per_sequence: False (default, TinyMem): one mask trained on the forget set in batches. True (MemPi):
            each row trains its own mask on itself alone (rows run side by side, `batch_size` at a time) and
            the final scores are averaged over rows.
        ratio, selection, skip_first_layer (block 0 also stays untrained, MemPi's l0 = 1), prefix_len,
            batch_size: see `NeuronMethodConfig`.
    Uses only the forget set.
    """

    method: str = "slim"
    lambda_l1: float = field(default=1000.0, metadata={"help": "Weight of the L1 term on the coefficients."})

    def __post_init__(self):
        super().__post_init__()
        if self.lambda_l1 != 0:
            check_positive("lambda_l1", self.lambda_l1)


def slim_gates(config: SlimConfig) -> Gates:
    return Gates(
        init=1.0,
        lam=config.lambda_l1,
        gate=lambda m: m.clamp(0, 1),
        penalty=lambda m: m.abs().mean(dim=(-2, -1)),
        score=lambda m: m,
    )


def slim_scores(model, config: SlimConfig, forget: Rows, units: Units, *, progress: bool = True) -> torch.Tensor:
    return train_gates(model, config, forget, units, slim_gates(config), progress=progress)


def fit_slim(model, config: SlimConfig, forget, retain, *, adapter_name: str, progress: bool) -> None:
    fit_with_scores(slim_scores, model, config, forget, adapter_name=adapter_name, progress=progress)


register_method(SlimConfig, fit_slim, score=slim_scores)
