"""Durable and Durable-agg (after Neurotoxin, Zhang et al. 2022): mask the weights with the largest
accumulated forget-set gradient magnitude."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from tqdm.auto import tqdm

from ..data import index_batches, n_batches, row_losses
from ..registry import register_method
from .common import WeightMethodConfig, grad_of, top_masks, warn_if_noop, weight_grads


@dataclass
class DurableConfig(WeightMethodConfig):
    """Durable: sum the gradient of the mean LM loss over all forget batches, then mask the weights with the
    largest |gradient|.

    Args:
        ratio: fraction of the targeted weights masked, counted **per tensor**: every targeted matrix loses
            floor(ratio * its size) weights. In (0, 1); the paper's grid is 1e-5 ... 0.05.
        batch_size: forget rows per pass (paper: 64).
    Uses only the forget set.
    """

    method: str = "durable"
    joint: ClassVar[bool] = False
    ratio: float = field(default=0.01, metadata={"help": "Fraction of each targeted tensor to mask."})


@dataclass
class DurableAggConfig(DurableConfig):
    """Durable-agg: as Durable, but the top-|gradient| weights are chosen across all targeted tensors together.

    Args:
        ratio: fraction of the targeted weights masked, counted **jointly**: floor(ratio * all targeted
            weights) in total, so a tensor with large gradients can lose more than `ratio` of itself and
            another none. In (0, 1); the paper's grid is 1e-5 ... 0.05.
    """

    method: str = "durable_agg"
    joint: ClassVar[bool] = True
    ratio: float = field(default=0.01, metadata={"help": "Fraction of all targeted weights to mask (jointly)."})


def fit_durable(model, config: DurableConfig, forget, retain, *, adapter_name: str, progress: bool) -> None:
    layers = model.base_model.mask_layers(adapter_name)
    with weight_grads(layers) as weights:
        steps = index_batches(len(forget), config.batch_size)
        for index in tqdm(steps, total=n_batches(len(forget), config.batch_size), desc=config.method,
                          disable=not progress):
            row_losses(model, *forget.batch(index)).mean().backward()  # grads add up over batches
        magnitude = {name: grad_of(w).abs() for name, w in zip(layers, weights)}
    model.base_model.set_keep_masks(top_masks(magnitude, config.ratio, joint=type(config).joint), adapter_name)
    warn_if_noop(model, adapter_name, config)


register_method(DurableConfig, fit_durable)
register_method(DurableAggConfig, fit_durable)
