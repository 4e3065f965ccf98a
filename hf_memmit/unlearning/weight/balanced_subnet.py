"""BalancedSubnet (Sakarvadia et al. 2025): Subnet's trained mask with a retain term, so the mask removes what
the forget rows need and spares what the retain rows need."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ...utils import check_choice, check_range
from ..data import cycle_indices, epoch_batches, epochs_of, n_batches, row_losses, signed_union
from ..parallel import ONE_PROCESS, Split
from ..registry import register_method
from .subnet import SubnetConfig, train_scores


@dataclass
class BalancedSubnetConfig(SubnetConfig):
    """BalancedSubnet: Subnet's scores, straight-through mask, initialisation, SGD and per-tensor `ratio`, with
    a loss that raises the forget CE and keeps the retain CE down. Row i enters a step's loss as c_i * CE_i,
    summed over the rows of the step (the released code's batch-sum scale, so `lr` means the same in both
    forms):

        c_i = -2 * loss_weight       for a forget row,
        c_i = +2 * (1 - loss_weight) for a retain row.

    The two forms differ only in what a step sees:

    - ``balance="paper_sign"`` (the released code, stored version 23e732a): one shuffled loader over
      forget + retain, `batch_size` rows per step, so a batch holds forget and retain rows in proportion to
      the set sizes; an epoch is one pass over the union. At loss_weight = 0.5 every c_i is -1 or +1, which
      is exactly the released loss mean(-B * label_i * CE_i) with labels +1 forget / -1 retain (that code has
      no loss_weight; the paper names one but its placement is not in any stored version).
    - ``balance="weighted"``: every step takes `batch_size` forget rows and `batch_size` retain rows, so the
      loss is 2 * B * (loss_weight * (-mean CE_forget) + (1 - loss_weight) * mean CE_retain), i.e. the
      alpha-weighted objective L = a * (-CE_forget) + (1 - a) * CE_retain, independent of the set sizes.
      An epoch is one pass over the larger set; the smaller one is cycled.

    Args:
        loss_weight: alpha, the weight of the forget term, in [0, 1] (paper's grid unknown; suggested
            0.5, 0.7, 0.9).
        balance: "paper_sign" (default, faithful) or "weighted".
        ratio: fraction of the targeted weights masked, counted **per tensor** (as Subnet), in (0, 1).
        epochs, max_steps, forget_check_every, lr, momentum, weight_decay, batch_size, seed: as Subnet.
    Needs a retain set, disjoint from the forget set.
    """

    method: str = "balanced_subnet"
    loss_weight: float = field(default=0.5, metadata={"help": "alpha: weight of the forget term, in [0, 1]."})
    balance: str = field(default="paper_sign", metadata={"help": "'paper_sign' (released code) or 'weighted'."})

    def __post_init__(self):
        super().__post_init__()
        check_range("loss_weight", self.loss_weight, 0.0, 1.0)
        check_choice("balance", self.balance, ("paper_sign", "weighted"))


def fit_balanced_subnet(model, config: BalancedSubnetConfig, forget, retain, *, adapter_name: str,
                        progress: bool, stop: Callable[[int], bool] | None = None,
                        split: Split = ONE_PROCESS) -> None:
    # every loss here is a sum over the step's rows, so each process sums over its slice of them
    generator = torch.Generator().manual_seed(config.seed)
    forget_coef, retain_coef = -2 * config.loss_weight, 2 * (1 - config.loss_weight)
    bs = config.batch_size
    if config.balance == "paper_sign":
        rows, sign = signed_union(forget, retain)
        coef = torch.where(sign > 0, forget_coef, retain_coef)
        steps, n_steps = epoch_batches(config, len(rows), generator)

        def loss_of(index):
            index = split.part(index)
            losses = row_losses(model, *rows.batch(index))
            return (coef[index].to(losses.device) * losses).sum()
    else:
        _, n_steps = epochs_of(config, n_batches(max(len(forget), len(retain)), bs))
        forget_batches = cycle_indices(len(forget), bs, generator)
        retain_batches = cycle_indices(len(retain), bs, generator)
        steps = ((next(forget_batches), next(retain_batches)) for _ in range(n_steps))

        def loss_of(pair):
            f, r = (split.part(index) for index in pair)
            return (forget_coef * row_losses(model, *forget.batch(f)).sum()
                    + retain_coef * row_losses(model, *retain.batch(r)).sum())

    train_scores(model, config, adapter_name, steps, n_steps, loss_of, progress, stop, split)


register_method(BalancedSubnetConfig, fit_balanced_subnet, needs_retain=True, data_parallel=True, deepspeed=True)
