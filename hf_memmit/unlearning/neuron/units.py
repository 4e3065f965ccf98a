"""The units of a model for the neuron-level methods.

A *neuron* (unit) is one input dimension of an MLP's down projection: GPT-2 `mlp.c_proj` (the `mlp.act`
output), Llama-family `mlp.down_proj` (act(gate) * up), GPT-NeoX `mlp.dense_4h_to_h`, ... (any layout of
`hf_memmit.models.mlp.find_mlps`). Every method scores the forget rows into a matrix
`[n_layer, d_ff]` (one row per masked block, in block order; higher = more responsible for the forget rows).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from peft import PeftModel
from torch import nn

from ...models.mlp import find_mlps, in_features, is_transposed
from ...tuners.common import layer_index
from .config import NeuronMethodConfig


@dataclass
class Units:
    """The MLP down projections of a model in block order: `blocks[i]` is the transformer block index of
    `modules[i]`; all have `d_ff` input units."""

    blocks: list[int]
    modules: list[nn.Module]
    d_ff: int

    def scored(self, config: NeuronMethodConfig) -> list[int]:
        """Rows (positions in `blocks`) that get scores and can be dropped."""
        return [i for i, b in enumerate(self.blocks) if not (config.skip_first_layer and b == 0)]


def config_d_ff(config) -> int | None:
    """d_ff from a transformers config: `intermediate_size` (Llama family), `n_inner` or 4 * n_embd (GPT-2),
    `ffn_dim` (OPT-like)."""
    for key in ("intermediate_size", "n_inner", "ffn_dim"):
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    if getattr(config, "model_type", None) == "gpt2":
        return 4 * config.n_embd
    return None


def find_units(model, adapter_name: str | None = None) -> Units:
    """The down projections of `model`: the layers of neuron-mask adapter `adapter_name` of a PeftModel, or,
    for a plain model, every block's MLP down projection (`hf_memmit.models.mlp.find_mlps`)."""
    if adapter_name is not None and isinstance(model, PeftModel):
        named = [(layer_index(n), m) for n, m in model.base_model.down_projections(adapter_name)]
    else:
        base = model.get_base_model() if isinstance(model, PeftModel) else model
        named = [(block.layer, block.down) for block in find_mlps(base)]
    if not named:
        raise ValueError("the model has no MLP down projection to score; allowed: a causal LM with an MLP in "
                         "every block (GPT-2, Llama family, GPT-NeoX, ...)")
    sizes = sorted({in_features(m) for _, m in named})
    if len(sizes) != 1:
        raise ValueError(f"the masked down projections have {sizes} input units; allowed: one d_ff for every block")
    d_ff = sizes[0]
    base_config = getattr(model.get_base_model() if isinstance(model, PeftModel) else model, "config", None)
    expected = config_d_ff(base_config) if base_config is not None else None
    if expected is not None and expected != d_ff:
        raise ValueError(f"the model config says d_ff={expected} but the down projections have {d_ff} input "
                         "units; allowed: target_modules naming the MLP down projections")
    return Units([b for b, _ in named], [m for _, m in named], d_ff)


def down_weight(module: nn.Module) -> tuple[torch.Tensor, bool]:
    """The down projection's weight and whether it is a GPT-2 Conv1D ((in, out) layout; nn.Linear is (out, in))."""
    base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
    return base.weight, is_transposed(base)


def unit_norms(module: nn.Module) -> torch.Tensor:
    """||W_out[:, i]||_2 per unit i: the norm of the vector unit i writes into the residual stream."""
    weight, conv = down_weight(module)
    return weight.detach().float().norm(dim=1 if conv else 0)


@contextmanager
def unit_patch(units: Units, patch: Callable[[int, torch.Tensor], torch.Tensor | None]):
    """For the duration, every down projection calls `patch(row, x)` on its input x [B, T, d_ff] (row = position
    in `units.blocks`); a returned tensor replaces x. This is MemPi's `Patch` on `mlp.act`, placed at the
    down projection's input so that gated MLPs work too."""

    def hook(row, module, args):
        out = patch(row, args[0])
        return None if out is None else (out, *args[1:])

    handles = [m.register_forward_pre_hook(lambda mod, args, row=row: hook(row, mod, args))
               for row, m in enumerate(units.modules)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def unscored(units: Units) -> torch.Tensor:
    """The score matrix before scoring: NaN marks blocks a method does not score (skip_first_layer)."""
    return torch.full((len(units.blocks), units.d_ff), float("nan"))
