from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from peft.tuners._buffer_dict import BufferDict
from peft.tuners.tuners_utils import BaseTunerLayer, check_adapters_to_merge
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..common import (
    StraightThroughMask,
    full_shape,
    lowest_k_mask,
    n_masked,
    pack_bits,
    register_zero3_external,
    unpack_bits,
    zero3_gathered,
)


class WeightMaskLayer(BaseTunerLayer):
    """Per adapter: a fixed keep-mask of the weight's shape, stored bit-packed (`weight_mask_bits`, uint8,
    1 = keep), and, only while a mask is being fitted, real-valued scores (`weight_mask_scores`) whose hard
    top-k mask replaces the fixed one in the forward (straight-through gradient)."""

    adapter_layer_names = ("weight_mask_scores",)
    other_param_names = ("weight_mask_bits", "weight_mask_ratio")

    def __init__(self, base_layer: nn.Module, **kwargs):
        self.base_layer = base_layer
        self.weight_mask_scores = nn.ParameterDict({})
        self.weight_mask_bits = BufferDict({}, persistent=True)
        self.weight_mask_ratio: dict[str, float] = {}
        self._disable_adapters = False
        self.merged_adapters = []
        self._merge_undo: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._mask_cache: dict[str, tuple[tuple, torch.Tensor]] = {}
        self.kwargs = kwargs

    def update_layer(self, adapter_name: str, inference_mode: bool = False) -> None:
        numel = math.prod(full_shape(self.get_base_layer().weight))
        self.weight_mask_bits[adapter_name] = torch.full((math.ceil(numel / 8),), 255, dtype=torch.uint8)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=inference_mode)

    def _get_available_adapters(self) -> set[str]:
        return set(self.weight_mask_bits.keys())

    def delete_adapter(self, adapter_name: str) -> None:
        BaseTunerLayer.delete_adapter(self, adapter_name)
        self._mask_cache.pop(adapter_name, None)

    # ---- the mask ----------------------------------------------------------------------------------------

    def keep_mask(self, adapter_name: str) -> torch.Tensor:
        """Bool keep-mask of the weight's shape (True = weight kept); from the scores while fitting."""
        weight = self.get_base_layer().weight
        if adapter_name in self.weight_mask_scores:
            scores = self.weight_mask_scores[adapter_name]
            with zero3_gathered([scores]):
                k = n_masked(self.weight_mask_ratio[adapter_name], scores.numel())
                return lowest_k_mask(scores.detach().abs(), k).bool()
        return unpack_bits(self.weight_mask_bits[adapter_name], full_shape(weight))

    def set_keep_mask(self, adapter_name: str, keep: torch.Tensor) -> None:
        shape = full_shape(self.get_base_layer().weight)
        if keep.shape != shape or keep.dtype != torch.bool:
            raise ValueError(
                f"keep mask of shape {tuple(keep.shape)} and dtype {keep.dtype}; allowed: torch.bool of the "
                f"weight's shape {tuple(shape)}"
            )
        bits = self.weight_mask_bits[adapter_name]
        bits.copy_(pack_bits(keep.to(bits.device)))

    def start_scores(self, adapter_name: str, ratio: float, generator: torch.Generator | None = None) -> None:
        """Trainable scores of the weight's shape, kaiming-uniform as in Ramanujan et al.'s supermasks, so the
        first mask prunes a random `ratio` of this tensor and training decides which weights."""
        weight = self.get_base_layer().weight
        scores = torch.empty(full_shape(weight), dtype=torch.float32)
        nn.init.kaiming_uniform_(scores, a=math.sqrt(5), generator=generator)
        # fp32 even on a bf16 model: bf16 scores would swallow small SGD steps
        self.weight_mask_scores[adapter_name] = nn.Parameter(scores.to(weight.device))
        self.weight_mask_ratio[adapter_name] = ratio
        register_zero3_external(self, [self.weight_mask_scores[adapter_name]])
        self.set_adapter(self.active_adapters)

    def fix_scores(self, adapter_name: str) -> None:
        """Freeze the scores' current hard mask into the bit-packed buffer and drop the scores."""
        keep = self.keep_mask(adapter_name)
        del self.weight_mask_scores[adapter_name]
        del self.weight_mask_ratio[adapter_name]
        self.set_keep_mask(adapter_name, keep)

    def _forward_mask(self, adapter_name: str, dtype: torch.dtype) -> torch.Tensor:
        """The 0/1 mask the forward multiplies in: float with a straight-through gradient while fitting,
        else the bool mask."""
        if adapter_name in self.weight_mask_scores:
            scores = self.weight_mask_scores[adapter_name]
            k = n_masked(self.weight_mask_ratio[adapter_name], scores.numel())
            return StraightThroughMask.apply(scores.abs(), k).to(dtype)
        # unpacking costs a pass over the weight: keep it until the bits change (copy_ bumps _version)
        bits = self.weight_mask_bits[adapter_name]
        key = (bits.data_ptr(), bits._version)
        hit = self._mask_cache.get(adapter_name)
        if hit is None or hit[0] != key:
            hit = (key, unpack_bits(bits, full_shape(self.get_base_layer().weight)))
            self._mask_cache[adapter_name] = hit
        return hit[1]


class WeightMaskLinear(nn.Module, WeightMaskLayer):
    """Wraps an `nn.Linear` (weight `(out, in)`) or a GPT-2 `Conv1D` (weight `(in, out)`); the mask always has
    the stored weight's shape, so no transposes are involved."""

    def __init__(self, base_layer: nn.Module, adapter_name: str, inference_mode: bool = False, **kwargs):
        super().__init__()
        WeightMaskLayer.__init__(self, base_layer, **kwargs)
        # the forward reads parameters other modules own: ZeRO-3 must gather them when this layer runs (the
        # scores are registered where they are made, `start_scores`)
        register_zero3_external(self, [base_layer.weight, base_layer.bias])
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, inference_mode=inference_mode)

    def _linear(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # the same ops as the base layer's forward, so an all-keep mask gives bit-identical outputs
        base = self.get_base_layer()
        if isinstance(base, Conv1D):
            size_out = x.size()[:-1] + (base.nf,)
            return torch.addmm(base.bias, x.view(-1, x.size(-1)), weight).view(size_out)
        return F.linear(x, weight, base.bias)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        if self.merged:
            return self.base_layer(x, *args, **kwargs)
        weight = self.get_base_layer().weight
        mask = None
        for name in self.active_adapters:
            if name in self.weight_mask_bits:
                m = self._forward_mask(name, weight.dtype)
                mask = m if mask is None else mask * m
        if mask is None:
            return self.base_layer(x, *args, **kwargs)
        return self._linear(x, weight * mask)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """W <- W * M. The zeroed values are kept (only those) so that `unmerge` is exact. `safe_merge` has
        nothing to check: zeroing weights cannot create NaN or inf."""
        for name in check_adapters_to_merge(self, adapter_names):
            if name not in self.weight_mask_bits:
                continue
            weight = self.get_base_weight()
            dropped = ~self.keep_mask(name).to(weight.device)
            self._merge_undo[name] = (dropped, weight[dropped].clone())
            self.set_base_weight(weight.masked_fill_(dropped, 0))
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.")
            return
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            if name not in self._merge_undo:
                continue
            dropped, values = self._merge_undo.pop(name)
            weight = self.get_base_weight()
            weight[dropped] = values
            self.set_base_weight(weight)

    def __repr__(self) -> str:
        return "weight_mask." + super().__repr__()
