from __future__ import annotations

import torch
from peft.tuners.tuners_utils import BaseTuner

from ..common import check_maskable, default_targets
from .layer import WeightMaskLayer, WeightMaskLinear


class WeightMaskModel(BaseTuner):
    """Injects `WeightMaskLinear` into the targeted layers and gives fitting code one place to read and write
    masks: `keep_masks`, `set_keep_masks`, `start_scores`, `fix_scores`."""

    prefix: str = "weight_mask_"
    tuner_layer_cls = WeightMaskLayer

    def _prepare_adapter_config(self, peft_config, model_config):
        # no per-model-type table: target_modules=None is filled in `_prepare_model`, which sees the model
        return peft_config

    def _prepare_model(self, peft_config, model):
        default_targets(peft_config, model, "all")

    def _create_and_replace(self, peft_config, adapter_name, target, target_name, parent, current_key, **kwargs):
        if isinstance(target, WeightMaskLayer):
            target.update_layer(adapter_name, inference_mode=peft_config.inference_mode)
            return
        check_maskable(self.model, target, current_key)
        new_module = WeightMaskLinear(target, adapter_name, inference_mode=peft_config.inference_mode)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)  # an added adapter is not trainable until it is set active
        self._replace_module(parent, target_name, new_module, target)

    # ---- mask access for fitting code ------------------------------------------------------------------------

    def mask_layers(self, adapter_name: str = "default") -> dict[str, WeightMaskLinear]:
        """Masked layers carrying `adapter_name`, by module name (e.g. 'transformer.h.0.mlp.c_fc')."""
        return {n: m for n, m in self.model.named_modules()
                if isinstance(m, WeightMaskLayer) and adapter_name in m.weight_mask_bits}

    def keep_masks(self, adapter_name: str = "default") -> dict[str, torch.Tensor]:
        return {n: m.keep_mask(adapter_name) for n, m in self.mask_layers(adapter_name).items()}

    def set_keep_masks(self, masks: dict[str, torch.Tensor], adapter_name: str = "default") -> None:
        layers = self.mask_layers(adapter_name)
        unknown = set(masks) - set(layers)
        if unknown:
            raise ValueError(f"no masked layer named {min(unknown)!r}; allowed: {sorted(layers)}")
        for name, keep in masks.items():
            layers[name].set_keep_mask(adapter_name, keep)

    def start_scores(self, ratio: float, adapter_name: str = "default", seed: int | None = None) -> None:
        """Switch every layer of the adapter to trainable scores that prune `ratio` of each tensor."""
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        for layer in self.mask_layers(adapter_name).values():
            layer.start_scores(adapter_name, ratio, generator)

    def fix_scores(self, adapter_name: str = "default") -> None:
        for layer in self.mask_layers(adapter_name).values():
            if adapter_name in layer.weight_mask_scores:
                layer.fix_scores(adapter_name)

    def masked_count(self, adapter_name: str = "default") -> tuple[int, int]:
        """(masked weights, targeted weights) of the adapter."""
        masks = self.keep_masks(adapter_name).values()
        return sum(int((~k).sum()) for k in masks), sum(k.numel() for k in masks)
