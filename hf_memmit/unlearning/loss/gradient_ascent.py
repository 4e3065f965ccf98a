"""Gradient ascent: raise the forget rows' loss (the first unlearning baseline; e.g. Jang et al., 2023,
"Knowledge unlearning for mitigating privacy risks in language models", Section 3), here in a LoRA adapter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..data import epoch_batches, row_losses
from ..parallel import ONE_PROCESS, Split
from ..registry import register_method
from .config import LossMethodConfig
from .train import train_adapter


@dataclass
class GradientAscentConfig(LossMethodConfig):
    """Gradient ascent: loss = -mean CE of a batch of forget rows, minimised by AdamW on LoRA weights. Nothing
    holds the rest of the model's behaviour in place, so it tends to collapse the model when run too long:
    use a stopping check (`forget_check_every`) or few steps. Uses only the forget set."""

    method: str = "gradient_ascent"


def fit_gradient_ascent(model, config: GradientAscentConfig, forget, retain, *, adapter_name: str, progress: bool,
                        stop: Callable[[int], bool] | None = None, split: Split = ONE_PROCESS) -> None:
    steps, n_steps = epoch_batches(config, len(forget), torch.Generator().manual_seed(config.seed))
    train_adapter(model, config, steps, n_steps,
                  lambda index: -split.mean(row_losses(model, *forget.batch(split.part(index))), len(index)),
                  progress, stop, split)


register_method(GradientAscentConfig, fit_gradient_ascent, data_parallel=True)
