from __future__ import annotations

import torch
from peft.tuners.tuners_utils import BaseTuner

from ..common import check_maskable, default_targets, layer_index
from .layer import NeuronMaskLayer, NeuronMaskLinear


class NeuronMaskModel(BaseTuner):
    """Injects `NeuronMaskLinear` into the MLP down projections. Masks are exchanged as one
    `[n_layer, d_ff]` tensor, rows ordered by transformer block index (the shape neuron attributions have)."""

    prefix: str = "neuron_mask_"
    tuner_layer_cls = NeuronMaskLayer

    def _prepare_adapter_config(self, peft_config, model_config):
        # no per-model-type table: target_modules=None is filled in `_prepare_model`, which sees the model
        return peft_config

    def _prepare_model(self, peft_config, model):
        default_targets(peft_config, model, "down")

    def _create_and_replace(self, peft_config, adapter_name, target, target_name, parent, current_key, **kwargs):
        trainable = peft_config.trainable_coefficients
        if isinstance(target, NeuronMaskLayer):
            target.update_layer(adapter_name, trainable, inference_mode=peft_config.inference_mode)
            return
        check_maskable(self.model, target, current_key)
        new_module = NeuronMaskLinear(target, adapter_name, trainable, inference_mode=peft_config.inference_mode)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    # ---- mask access -----------------------------------------------------------------------------------------

    def down_projections(self, adapter_name: str = "default") -> list[tuple[str, NeuronMaskLinear]]:
        """(module name, layer) of the adapter's masked down projections, in block order."""
        layers = [(n, m) for n, m in self.model.named_modules()
                  if isinstance(m, NeuronMaskLayer) and adapter_name in m.neuron_mask_keep]
        return sorted(layers, key=lambda item: layer_index(item[0]))

    def keep_mask(self, adapter_name: str = "default") -> torch.Tensor:
        """Bool `[n_layer, d_ff]`, True = unit kept."""
        return torch.stack([m.neuron_mask_keep[adapter_name].cpu() for _, m in self.down_projections(adapter_name)])

    def set_keep_mask(self, keep: torch.Tensor, adapter_name: str = "default") -> None:
        """Set the keep-mask from a bool `[n_layer, d_ff]` tensor (or a list with one row per masked block)."""
        layers = self.down_projections(adapter_name)
        if len(keep) != len(layers):
            raise ValueError(f"keep mask has {len(keep)} rows; allowed: one per masked block ({len(layers)})")
        for row, (_, layer) in zip(keep, layers):
            layer.set_keep(adapter_name, torch.as_tensor(row).to(layer.neuron_mask_keep[adapter_name].device))

    def coefficients(self, adapter_name: str = "default") -> list[torch.nn.Parameter]:
        """The trainable per-unit coefficients, in block order (empty without trainable_coefficients)."""
        return [m.neuron_mask_coef[adapter_name] for _, m in self.down_projections(adapter_name)
                if adapter_name in m.neuron_mask_coef]
