from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import PeftConfig

from ..common import MemmitPeftType, dispatch_method_config, finish_mask_config


@dataclass
class WeightMaskConfig(PeftConfig):
    """A boolean mask on every weight of the targeted matrices: the adapted layer computes with `W * M`.

    This is the tuner's own config. The unlearning methods (Greedy, SOU, Durable, Durable-agg, Subnet,
    BalancedSubnet) subclass it, add their hyperparameters and set `method`; a saved adapter comes back as
    the config class of its method (see `dispatch_method_config`).

    Args:
        target_modules: module names (suffix match) or one regex (full match) of the `nn.Linear` / GPT-2
            `Conv1D` layers to mask. Default: every MLP projection of the model, found by module structure and
            names for any model type (`hf_memmit.models.mlp.find_mlps`; GPT-2 `mlp.c_fc`, `mlp.c_proj`;
            Llama family `mlp.gate_proj`, `mlp.up_proj`, `mlp.down_proj`; GPT-NeoX `mlp.dense_h_to_4h`,
            `mlp.dense_4h_to_h`; ...).
        exclude_modules: names or regex left out.
        layers_to_transform, layers_pattern: restrict to some transformer blocks, as in other peft methods.
        method: the unlearning method that fitted the mask (None for a hand-made mask).
    """

    target_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Linear/Conv1D modules to mask; default: the model's MLP projections."}
    )
    exclude_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Modules to leave out (names or a regex)."}
    )
    layers_to_transform: list[int] | int | None = field(
        default=None, metadata={"help": "Only these transformer block indices."}
    )
    layers_pattern: list[str] | str | None = field(
        default=None, metadata={"help": "Name of the block list (e.g. 'h' or 'layers') for layers_to_transform."}
    )
    method: str | None = field(default=None, metadata={"help": "Unlearning method that fitted this mask."})
    task_type: str | None = field(default="CAUSAL_LM", metadata={"help": "Task type."})

    def __new__(cls, *args, **kwargs):
        return super().__new__(dispatch_method_config(WeightMaskConfig, cls, kwargs))

    def __post_init__(self):
        super().__post_init__()
        finish_mask_config(self, MemmitPeftType.WEIGHT_MASK)
