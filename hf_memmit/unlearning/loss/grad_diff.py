"""GradDiff: gradient ascent on the forget rows plus gradient descent on the retain rows (Liu et al., 2022,
"Continual learning and private unlearning"; the TOFU benchmark's "Grad. Diff.", Maini et al., 2024, Section 4),
here in a LoRA adapter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..data import epoch_batches, row_losses
from ..parallel import ONE_PROCESS, Split
from ..registry import register_method
from .config import RetainTermConfig
from .train import retain_term, train_adapter


@dataclass
class GradDiffConfig(RetainTermConfig):
    """GradDiff: loss = -mean CE(forget batch) + retain_weight * mean CE(retain batch); each step takes
    `batch_size` forget rows and `batch_size` retain rows (the retain set is cycled). An epoch is one pass over
    the forget set. Needs a retain set, disjoint from the forget set."""

    method: str = "grad_diff"


def fit_grad_diff(model, config: GradDiffConfig, forget, retain, *, adapter_name: str, progress: bool,
                  stop: Callable[[int], bool] | None = None, split: Split = ONE_PROCESS) -> None:
    generator = torch.Generator().manual_seed(config.seed)
    steps, n_steps = epoch_batches(config, len(forget), generator)
    retain_ce = retain_term(model, retain, config, generator, split)

    def loss_of(index):
        forget_ce = split.mean(row_losses(model, *forget.batch(split.part(index))), len(index))
        return -forget_ce + config.retain_weight * retain_ce()

    train_adapter(model, config, steps, n_steps, loss_of, progress, stop, split)


register_method(GradDiffConfig, fit_grad_diff, needs_retain=True, data_parallel=True)
