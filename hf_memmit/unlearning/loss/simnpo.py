"""SimNPO (Fan, Liu, Lin, Jia, Zhang, Mei and Liu, 2024, "Simplicity prevails: rethinking negative preference
optimization for LLM unlearning", Section 4): NPO without a reference model, on the length-normalised
log-likelihood with a margin, plus a retain term, here in a LoRA adapter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ...utils import check_range
from ..data import epoch_batches, row_losses
from ..parallel import ONE_PROCESS, Split
from ..registry import register_method
from .config import RetainTermConfig
from .train import retain_term, train_adapter


@dataclass
class SimNPOConfig(RetainTermConfig):
    """SimNPO: with CE_i the mean next-token cross-entropy of forget row i (= -log pi(y_i) / |y_i|),

        loss = mean_i -(2 / beta) * log sigmoid(beta * CE_i - gamma) + retain_weight * mean CE(retain batch).

    No reference model. Needs a retain set.

    Args:
        beta: inverse temperature (> 0). gamma: reward margin (>= 0). retain_weight: weight of the retain term
            (>= 0). The paper tunes all three per benchmark; the defaults are a starting point, not its values.
    """

    method: str = "simnpo"
    beta: float = field(default=2.5, metadata={"help": "Inverse temperature beta, > 0."})
    gamma: float = field(default=0.0, metadata={"help": "Reward margin gamma, >= 0."})

    def __post_init__(self):
        super().__post_init__()
        check_range("beta", self.beta, 0.0, float("inf"), low_open=True, high_open=True)
        check_range("gamma", self.gamma, 0.0, float("inf"), high_open=True)


def fit_simnpo(model, config: SimNPOConfig, forget, retain, *, adapter_name: str, progress: bool,
               stop: Callable[[int], bool] | None = None, split: Split = ONE_PROCESS) -> None:
    generator = torch.Generator().manual_seed(config.seed)
    steps, n_steps = epoch_batches(config, len(forget), generator)
    retain_ce = retain_term(model, retain, config, generator, split)

    def loss_of(index):
        ce = row_losses(model, *forget.batch(split.part(index))).float()
        loss = split.mean(-(2.0 / config.beta) * F.logsigmoid(config.beta * ce - config.gamma), len(index))
        return loss + config.retain_weight * retain_ce() if config.retain_weight else loss

    train_adapter(model, config, steps, n_steps, loss_of, progress, stop, split)


register_method(SimNPOConfig, fit_simnpo, needs_retain=True, data_parallel=True)
