from __future__ import annotations

import warnings

import torch
from peft.tuners._buffer_dict import BufferDict
from peft.tuners.tuners_utils import BaseTunerLayer, check_adapters_to_merge
from torch import nn

from ..common import mlp_helpers


class NeuronMaskLayer(BaseTunerLayer):
    """Per adapter: a bool keep-mask over the down projection's input units (`neuron_mask_keep`) and,
    optionally, a trainable coefficient per unit (`neuron_mask_coef`). The unit's activation is multiplied by
    keep * coef before the down projection."""

    adapter_layer_names = ("neuron_mask_coef",)
    other_param_names = ("neuron_mask_keep",)

    def __init__(self, base_layer: nn.Module, **kwargs):
        self.base_layer = base_layer
        self.neuron_mask_coef = nn.ParameterDict({})
        self.neuron_mask_keep = BufferDict({}, persistent=True)
        self._disable_adapters = False
        self.merged_adapters = []
        self._merge_undo: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.kwargs = kwargs

    @property
    def n_units(self) -> int:
        return mlp_helpers().in_features(self.get_base_layer())

    @property
    def transposed(self) -> bool:
        """True when the base layer is a GPT-2 Conv1D (weight (in, out)); nn.Linear stores (out, in)."""
        return mlp_helpers().is_transposed(self.get_base_layer())

    def update_layer(self, adapter_name: str, trainable_coefficients: bool = False, inference_mode: bool = False):
        self.neuron_mask_keep[adapter_name] = torch.ones(self.n_units, dtype=torch.bool)
        if trainable_coefficients:
            self.neuron_mask_coef[adapter_name] = nn.Parameter(torch.ones(self.n_units))
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=inference_mode)

    def _get_available_adapters(self) -> set[str]:
        return set(self.neuron_mask_keep.keys())

    def set_keep(self, adapter_name: str, keep: torch.Tensor) -> None:
        if keep.shape != (self.n_units,) or keep.dtype != torch.bool:
            raise ValueError(
                f"keep mask of shape {tuple(keep.shape)} and dtype {keep.dtype}; allowed: torch.bool of shape "
                f"({self.n_units},)"
            )
        self.neuron_mask_keep[adapter_name].copy_(keep)

    def unit_scale(self, adapter_name: str, dtype: torch.dtype) -> torch.Tensor:
        """keep * coef for one adapter, one entry per hidden unit."""
        scale = self.neuron_mask_keep[adapter_name].to(dtype)
        if adapter_name in self.neuron_mask_coef:
            scale = scale * self.neuron_mask_coef[adapter_name].to(dtype)
        return scale


class NeuronMaskLinear(nn.Module, NeuronMaskLayer):
    """Wraps the down projection (`nn.Linear` or GPT-2 `Conv1D`) and scales its input units."""

    def __init__(self, base_layer: nn.Module, adapter_name: str, trainable_coefficients: bool = False,
                 inference_mode: bool = False, **kwargs):
        super().__init__()
        NeuronMaskLayer.__init__(self, base_layer, **kwargs)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, trainable_coefficients, inference_mode)

    def _scale(self, dtype: torch.dtype) -> torch.Tensor | None:
        scale = None
        for name in self.active_adapters:
            if name in self.neuron_mask_keep:
                s = self.unit_scale(name, dtype)
                scale = s if scale is None else scale * s
        return scale

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
        elif not self.merged:
            scale = self._scale(x.dtype)
            if scale is not None:
                x = x * scale  # an all-ones scale leaves x bit-identical
        return self.base_layer(x, *args, **kwargs)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Scale the weight's input slices by keep * coef; the changed slices are kept for an exact `unmerge`."""
        for name in check_adapters_to_merge(self, adapter_names):
            if name not in self.neuron_mask_keep:
                continue
            weight = self.get_base_weight()
            scale = self.unit_scale(name, weight.dtype).detach()
            units = (scale != 1).nonzero().squeeze(1)
            conv = self.transposed
            self._merge_undo[name] = (units, (weight[units] if conv else weight[:, units]).clone())
            merged = weight * (scale[:, None] if conv else scale[None, :])
            if safe_merge and not torch.isfinite(merged).all():
                raise ValueError(f"merging adapter {name!r} gives non-finite weights")
            self.set_base_weight(merged)
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.")
            return
        conv = self.transposed
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            if name not in self._merge_undo:
                continue
            units, values = self._merge_undo.pop(name)
            weight = self.get_base_weight()
            if conv:
                weight[units] = values
            else:
                weight[:, units] = values
            self.set_base_weight(weight)

    def __repr__(self) -> str:
        return "neuron_mask." + super().__repr__()
