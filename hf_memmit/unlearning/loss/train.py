"""What every loss-based method runs: AdamW on the adapter's LoRA weights over a stream of batches (the schedule
and the stop-when-clean check of `run_steps`), and the retain term of those that have one."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from ..data import cycle_indices, row_losses
from ..parallel import ONE_PROCESS, Split
from ..stopping import run_steps


def retain_term(model, retain, config, generator: torch.Generator,
                split: Split = ONE_PROCESS) -> Callable[[], torch.Tensor]:
    """Mean CE of the next batch of retain rows (cycled, reshuffled every pass); this process's share of it."""
    batches = cycle_indices(len(retain), config.batch_size, generator)

    def mean_ce():
        index = next(batches)
        return split.mean(row_losses(model, *retain.batch(split.part(index))), len(index))

    return mean_ce


def train_adapter(model, config, steps: Iterator, n_steps: int, loss_of: Callable[[object], torch.Tensor],
                  progress: bool, stop: Callable[[int], bool] | None = None, split: Split = ONE_PROCESS) -> None:
    """AdamW on the trainable (LoRA) parameters, one step per item of `steps` (`run_steps`: the schedule and the
    stop-when-clean check). `loss_of(item)` is this process's share of the step's loss; `split` sums the
    gradients over processes before clipping."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

    def step(item):
        optimizer.zero_grad()
        split.backward(loss_of(item), params)
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()

    run_steps(steps, n_steps, config, step, progress and split.is_main_process, stop)
    optimizer.zero_grad(set_to_none=True)
