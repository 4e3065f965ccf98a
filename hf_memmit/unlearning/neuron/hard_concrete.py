"""Hard Concrete (MemPi `hardconcrete.py` after Louizos et al. 2018's L0 gates, TinyMem `hc`): learn a
stochastic gate per unit under an expected-L0 pressure; the units with the highest gate logits are dropped."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ...utils import check_positive, check_range, device_of
from ..data import Rows
from ..registry import register_method
from .gates import Gates, GateTrainingConfig, train_gates
from .scores import fit_with_scores
from .units import Units


@dataclass
class HardConcreteConfig(GateTrainingConfig):
    """Hard Concrete: a gate logit log(alpha) per unit. Each forward pass (and each block) draws
    u ~ U(1e-4, 1 - 1e-4) per unit (per row with per_sequence), s = sigmoid((log u - log(1-u) + log alpha) / beta),
    z = clamp(s * (zeta - gamma) + gamma, 0, 1), and multiplies the unit's activation by z. Adam on the logits
    minimises L(forget rows) + lambda_l0 * R, with R the expected L0 norm: the mean over trained units of
    sigmoid(log alpha - beta * log(-gamma / zeta)). Scores: sigmoid(log alpha).

    Initialisation: log alpha = logit((mask_p - gamma) / (zeta - gamma)), so the expected deterministic gate is
    mask_p (MemPi; TinyMem's code overwrote this constant with N(0, 0.01) noise, a bug fixed here).

    Defaults are TinyMem's (lr 0.1, lambda 1000, stop_loss 0.1, mask_p 0.5, beta 2/3, gamma/zeta -0.1/1.1;
    epoch grid 1, 10, 30). MemPi's DEL setting: lambda_l0 2000, lr 1e-3, mask_p 0.9, beta 0.33, stop_loss
    0.4, per_sequence=True, skip_first_layer=True.

    Args:
        lambda_l0: weight of the expected-L0 term, >= 0 (MemPi/TinyMem `lambda_l1`).
        mask_p: initial expected gate, in (0, 1). beta: temperature, > 0. gamma < 0 < 1 < zeta: the stretch.
        lr, epochs, stop_loss (on R), check_every, per_sequence: as `SlimConfig`.
        seed: seed of the gate noise (MemPi: torch.manual_seed(0)).
        ratio, selection, skip_first_layer, prefix_len, batch_size: see `NeuronMethodConfig`.
    Uses only the forget set.
    """

    method: str = "hc"
    lambda_l0: float = field(default=1000.0, metadata={"help": "Weight of the expected-L0 term."})
    mask_p: float = field(default=0.5, metadata={"help": "Initial expected gate value, in (0, 1)."})
    beta: float = field(default=2 / 3, metadata={"help": "Hard Concrete temperature, > 0."})
    gamma: float = field(default=-0.1, metadata={"help": "Lower end of the stretch interval, < 0."})
    zeta: float = field(default=1.1, metadata={"help": "Upper end of the stretch interval, > 1."})
    seed: int = field(default=0, metadata={"help": "Seed of the gate noise."})

    def __post_init__(self):
        super().__post_init__()
        if self.lambda_l0 != 0:
            check_positive("lambda_l0", self.lambda_l0)
        check_range("mask_p", self.mask_p, 0.0, 1.0, low_open=True, high_open=True)
        check_positive("beta", self.beta)
        check_range("gamma", self.gamma, float("-inf"), 0.0, low_open=True, high_open=True)
        check_range("zeta", self.zeta, 1.0, float("inf"), low_open=True, high_open=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} is out of range; allowed: an integer >= 0")


def initial_log_alpha(config: HardConcreteConfig) -> float:
    q = (config.mask_p - config.gamma) / (config.zeta - config.gamma)
    return math.log(q / (1 - q))


def hard_concrete_gates(config: HardConcreteConfig, generator: torch.Generator) -> Gates:
    gamma, zeta, beta = config.gamma, config.zeta, config.beta
    shift = beta * math.log(-gamma / zeta)

    def sample(log_alpha):
        u = torch.rand(log_alpha.shape, generator=generator, device=log_alpha.device).clamp(1e-4, 1 - 1e-4)
        s = torch.sigmoid((u.log() - (1 - u).log() + log_alpha) / beta)
        return (s * (zeta - gamma) + gamma).clamp(0, 1)

    return Gates(
        init=initial_log_alpha(config),
        lam=config.lambda_l0,
        gate=sample,
        penalty=lambda log_alpha: torch.sigmoid(log_alpha - shift).mean(dim=(-2, -1)),
        score=torch.sigmoid,
    )


def hard_concrete_scores(model, config: HardConcreteConfig, forget: Rows, units: Units, *,
                         progress: bool = True) -> torch.Tensor:
    generator = torch.Generator(device=device_of(model)).manual_seed(config.seed)
    return train_gates(model, config, forget, units, hard_concrete_gates(config, generator), progress=progress)


def fit_hard_concrete(model, config: HardConcreteConfig, forget, retain, *, adapter_name: str,
                      progress: bool) -> None:
    fit_with_scores(hard_concrete_scores, model, config, forget, adapter_name=adapter_name, progress=progress)


register_method(HardConcreteConfig, fit_hard_concrete, score=hard_concrete_scores)
