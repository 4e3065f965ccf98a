"""Subnet (after Ramanujan et al. 2020's supermasks): train a sparse mask by gradient ascent on the forget loss."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from ...utils import check_int, check_range
from ..data import epoch_batches, lockstep_losses, row_losses
from ..parallel import ONE_PROCESS, DeepSpeedSplit, Split
from ..registry import register_method
from ..stopping import run_steps
from .common import WeightMethodConfig, warn_if_noop


@dataclass
class SubnetConfig(WeightMethodConfig):
    """Subnet: every targeted tensor gets real-valued scores of its shape (kaiming-uniform init); the forward
    uses the weight times a hard mask that is 0 at the lowest-|score| `ratio` of the tensor; the gradient
    passes straight through to the scores. The scores are trained with SGD to **raise** the forget loss
    (loss = -mean CE on forget rows), then the mask is frozen. Weights are never changed or rescaled.

    Args:
        ratio: fraction of the targeted weights masked, counted **per tensor**: every targeted matrix loses
            floor(ratio * its size) weights. In (0, 1); the paper's grid is 1e-5 ... 0.9.
        epochs: passes over the forget set (paper grid 1, 10, 30; reference default 5). None: schedule by
            optimizer steps alone (`max_steps` is then required).
        max_steps: if set, stop after this many optimizer steps even within an epoch (a time budget on CPU;
            None = all `epochs`).
        forget_check_every: if set, every this many steps run the (k, l) check on the forget rows under the current
            mask and stop as soon as none is extractable (needs the forget Dataset's `prompt_length` column;
            see `hf_memmit.unlearning.stopping`). None: no check, run the whole schedule.
        forget_check_rows: if set and smaller than the forget set, a check first looks at a random sample of this
            many forget rows and checks all of them only when the sample has none extractable. None: all rows.
        lr, momentum, weight_decay: SGD on the scores (paper: 0.1, 0.9, 5e-4).
        batch_size: rows per step (paper: 64). seed: score initialisation and shuffling.
    Uses only the forget set.
    """

    method: str = "subnet"
    ratio: float = field(default=0.05, metadata={"help": "Fraction of each targeted tensor to mask."})
    epochs: int | None = field(default=5, metadata={"help": "Passes over the training rows (None: max_steps)."})
    lr: float = field(default=0.1, metadata={"help": "SGD learning rate on the scores, > 0."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum, in [0, 1)."})
    weight_decay: float = field(default=5e-4, metadata={"help": "SGD weight decay on the scores, >= 0."})
    max_steps: int | None = field(default=None, metadata={"help": "Stop after this many steps (None: epochs)."})
    forget_check_every: int | None = field(default=None, metadata={
        "help": "Check the forget rows every this many steps; stop when none is extractable (None: off)."})
    forget_check_rows: int | None = field(default=None, metadata={
        "help": "Rows sampled per check; all rows are checked only when the sample has none (None: all)."})

    def __post_init__(self):
        super().__post_init__()
        if self.epochs is None and self.max_steps is None:
            raise ValueError("epochs=None schedules by optimizer steps; allowed: then set max_steps (an integer "
                             ">= 1), or give epochs")
        if self.epochs is not None:
            check_int("epochs", self.epochs, 1)
        if self.forget_check_every is not None:
            check_int("forget_check_every", self.forget_check_every, 1)
        if self.forget_check_rows is not None:
            check_int("forget_check_rows", self.forget_check_rows, 1)
        check_range("lr", self.lr, 0.0, float("inf"), low_open=True, high_open=True)
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_range("weight_decay", self.weight_decay, 0.0, float("inf"), high_open=True)
        if self.max_steps is not None:
            check_int("max_steps", self.max_steps, 1)


def train_scores(model, config: SubnetConfig, adapter_name: str, steps: Iterator, n_steps: int,
                 loss_of: Callable, progress: bool, stop: Callable[[int], bool] | None = None,
                 split: Split = ONE_PROCESS) -> None:
    """The mask training both Subnet and BalancedSubnet run: scores on, SGD over `steps` (`run_steps`: the
    schedule and the stop-when-clean check), mask frozen. `loss_of(item)` is this process's share of the step's
    loss; `split` sums the score gradients over processes."""
    tuner = model.base_model
    tuner.start_scores(config.ratio, adapter_name, seed=config.seed)
    layers = tuner.mask_layers(adapter_name).values()
    scores = [layer.weight_mask_scores[adapter_name] for layer in layers]
    optimizer = torch.optim.SGD(scores, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if isinstance(split, DeepSpeedSplit):
        _, optimizer = split.prepare(model, optimizer, config.batch_size)

    def step(item):
        optimizer.zero_grad()
        split.backward(loss_of(item), scores)
        optimizer.step()

    try:
        with lockstep_losses(model) if isinstance(split, DeepSpeedSplit) else contextlib.nullcontext():
            run_steps(steps, n_steps, config, step, progress and split.is_main_process, stop)
    finally:
        tuner.fix_scores(adapter_name)
    warn_if_noop(model, adapter_name, config)


def fit_subnet(model, config: SubnetConfig, forget, retain, *, adapter_name: str, progress: bool,
               stop: Callable[[int], bool] | None = None, split: Split = ONE_PROCESS) -> None:
    steps, n_steps = epoch_batches(config, len(forget), torch.Generator().manual_seed(config.seed))
    train_scores(model, config, adapter_name, steps, n_steps,
                 lambda index: -split.mean(row_losses(model, *forget.batch(split.part(index))), len(index)),
                 progress, stop, split)


register_method(SubnetConfig, fit_subnet, data_parallel=True, deepspeed=True)
