"""What the weight-level methods share: the common config fields, gradients w.r.t. the masked weights, top-k."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from ...tuners import WeightMaskConfig, n_masked
from ...utils import check_int, check_range


@dataclass
class WeightMethodConfig(WeightMaskConfig):
    """Fields of every weight-level method.

    `ratio` is the fraction of the targeted weights that get masked, rounded down; each method says whether
    it counts per tensor (every targeted matrix loses floor(ratio * its size)) or jointly (floor(ratio * all
    targeted weights) in total, wherever they are). Allowed: 0 < ratio < 1.
    """

    ratio: float = field(default=0.01, metadata={"help": "Fraction of targeted weights to mask, in (0, 1)."})
    batch_size: int = field(default=64, metadata={"help": "Rows per forward/backward pass."})
    seed: int = field(default=0, metadata={"help": "Seed for shuffling and score initialisation."})

    def __post_init__(self):
        super().__post_init__()
        check_range("ratio", self.ratio, 0.0, 1.0, low_open=True, high_open=True)
        check_int("batch_size", self.batch_size, 1)
        check_int("seed", self.seed, 0)


@contextmanager
def weight_grads(layers: dict):
    """Let autograd reach the (frozen) base weights of the masked layers for the duration. Since the layer
    computes with W * M, the gradient w.r.t. W is dL/d(W*M) * M: zero at already-masked weights."""
    weights = [layer.get_base_layer().weight for layer in layers.values()]
    flags = [w.requires_grad for w in weights]
    for w in weights:
        w.requires_grad_(True)
        w.grad = None
    try:
        yield weights
    finally:
        for w, flag in zip(weights, flags):
            w.requires_grad_(flag)
            w.grad = None


def grad_of(weight: torch.Tensor) -> torch.Tensor:
    """The accumulated gradient; zeros for a weight the loss did not reach."""
    return torch.zeros_like(weight) if weight.grad is None else weight.grad


def top_masks(scores: dict[str, torch.Tensor], ratio: float, joint: bool) -> dict[str, torch.Tensor]:
    """Keep-masks (bool) dropping the highest-scoring weights: floor(ratio * numel) per tensor, or
    floor(ratio * total) over all tensors together when `joint`."""
    if not joint:
        keep = {}
        for name, s in scores.items():
            drop = torch.zeros(s.numel(), dtype=torch.bool, device=s.device)
            drop[torch.topk(s.reshape(-1), n_masked(ratio, s.numel())).indices] = True
            keep[name] = ~drop.view(s.shape)
        return keep
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    drop = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    drop[torch.topk(flat, n_masked(ratio, flat.numel())).indices] = True
    parts = drop.split([s.numel() for s in scores.values()])
    return {name: ~part.view(s.shape) for (name, s), part in zip(scores.items(), parts)}


def warn_if_noop(model, adapter_name: str, config) -> None:
    masked, total = model.base_model.masked_count(adapter_name)
    if masked == 0:
        warnings.warn(
            f"{config.method}: ratio={config.ratio} masks 0 of {total} targeted weights; the adapter changes "
            "nothing. Raise ratio (it is rounded down per tensor or over all targeted weights, see the config)."
        )
