"""The entry points of the neuron-level methods: fit an adapter from a method's scores, or compute the
scores alone (`neuron_scores`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from ..data import Rows, as_rows
from ..registry import get_method
from .config import NeuronMethodConfig
from .rows import check_rows
from .selection import n_dropped, top_units
from .units import find_units

ScoreFn = Callable[..., torch.Tensor]


def fit_with_scores(score_fn: ScoreFn, model, config: NeuronMethodConfig, forget: Rows, *, adapter_name: str,
                    progress: bool) -> torch.Tensor:
    """Score the forget rows with `score_fn`, then set the adapter's keep-mask to drop the top units. Returns
    the scores."""
    units = find_units(model, adapter_name)
    n_dropped(config, units)  # refuse a no-op selection before spending any compute
    check_rows(forget, config.prefix_len)
    scores = score_fn(model, config, forget, units, progress=progress)
    model.base_model.set_keep_mask(top_units(scores, config, units), adapter_name)
    return scores


def neuron_scores(model, config: NeuronMethodConfig, forget, *, batch_size: int | None = None,
                  progress: bool = True) -> torch.Tensor:
    """Only the attribution step of a neuron-level method: its score matrix [n_layer, d_ff] (float32, on the
    CPU; rows of blocks it does not score are NaN) for the forget rows, without building an adapter.

    `model` is a plain causal LM (GPT-2, Llama family) or a PeftModel (scored as it currently computes, active
    adapters included). The model's weights are never changed; it runs in eval mode during scoring."""
    method = get_method(config)
    if method.score is None:
        raise ValueError(f"method {method.name!r} has no neuron scores; allowed: a neuron-level method config "
                         "(ZeroConfig, ActConfig, SlimConfig, HardConcreteConfig, IntegratedGradientsConfig)")
    if batch_size is not None:
        config = dataclasses.replace(config, batch_size=batch_size)
    rows = as_rows(forget, "forget")
    if len(rows) == 0:
        raise ValueError("forget set is empty; allowed: at least one row (the rows to score)")
    check_rows(rows, config.prefix_len)
    units = find_units(model)
    was_training = model.training
    model.eval()
    try:
        return method.score(model, config, rows, units, progress=progress)
    finally:
        model.train(was_training)
