"""Greedy (Maini et al. 2023): repeatedly drop the weight whose removal most lowers a signed loss."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ...tuners import n_masked
from ...utils import check_int
from ..data import cycle_indices, row_losses, signed_union
from ..registry import register_method
from .common import WeightMethodConfig, grad_of, warn_if_noop, weight_grads


@dataclass
class GreedyConfig(WeightMethodConfig):
    """Greedy weight dropout on a signed loss.

    Each step draws a batch from the shuffled union of forget rows (sign +1) and retain rows (sign -1),
    computes L = -sum_i sign_i * CE_i (the reference's mean(-B * label_i * CE_i)), and masks the
    `weights_per_step` still-kept targeted weights with the largest w * dL/dw, the first-order estimate of how
    much zeroing w lowers L (raises forget loss, keeps retain loss). Steps repeat until the count is reached.

    Args:
        ratio: fraction of the targeted weights masked, counted **jointly** over all targeted tensors: exactly
            floor(ratio * total targeted weights) weights are masked (the reference counted every trainable
            parameter, embeddings included). In (0, 1); the paper's grid is 1e-5 ... 0.05.
        weights_per_step: weights dropped per forward/backward pass. 1 (default) is the paper's algorithm;
            larger values trade fidelity for speed (the reference needs one pass per dropped weight).
        batch_size: rows per step (paper: 64). seed: shuffling seed.
    Needs a retain set.
    """

    method: str = "greedy"
    ratio: float = field(default=1e-3, metadata={"help": "Fraction of all targeted weights to mask (jointly)."})
    weights_per_step: int = field(default=1, metadata={"help": "Weights dropped per forward/backward pass."})

    def __post_init__(self):
        super().__post_init__()
        check_int("weights_per_step", self.weights_per_step, 1)


def fit_greedy(model, config: GreedyConfig, forget, retain, *, adapter_name: str, progress: bool) -> None:
    layers = model.base_model.mask_layers(adapter_name)
    keep = {name: layer.keep_mask(adapter_name) for name, layer in layers.items()}
    total = sum(k.numel() for k in keep.values())
    count = n_masked(config.ratio, total)
    rows, sign = signed_union(forget, retain)
    batches = cycle_indices(len(rows), config.batch_size, torch.Generator().manual_seed(config.seed))
    sizes = [k.numel() for k in keep.values()]

    dropped = 0
    with weight_grads(layers) as weights, tqdm(total=count, desc="greedy", disable=not progress) as bar:
        while dropped < count:
            index = next(batches)
            loss = -(sign[index].to(weights[0].device) * row_losses(model, *rows.batch(index))).sum()
            for w in weights:
                w.grad = None
            loss.backward()
            # already-masked weights are never picked again, so exactly `count` distinct weights go
            score = torch.cat([
                (w.detach() * grad_of(w)).reshape(-1).masked_fill(~k.to(w.device).reshape(-1), float("-inf"))
                for w, k in zip(weights, keep.values())
            ])
            k_step = min(config.weights_per_step, count - dropped)
            picked = torch.zeros(total, dtype=torch.bool)
            picked[torch.topk(score, k_step).indices.cpu()] = True
            for (name, k), part in zip(keep.items(), picked.split(sizes)):
                if part.any():
                    k &= ~part.view(k.shape).to(k.device)
                    layers[name].set_keep_mask(adapter_name, k)
            dropped += k_step
            bar.update(k_step)
    warn_if_noop(model, adapter_name, config)


register_method(GreedyConfig, fit_greedy, needs_retain=True)
