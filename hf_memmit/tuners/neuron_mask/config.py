from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import PeftConfig

from ..common import MemmitPeftType, dispatch_method_config, finish_mask_config


@dataclass
class NeuronMaskConfig(PeftConfig):
    """A keep-mask per MLP hidden unit, applied at the input of the MLP's down projection (GPT-2 `mlp.c_proj`,
    Llama-family `mlp.down_proj`, GPT-NeoX `mlp.dense_4h_to_h`, ...): a masked unit contributes nothing to the block's output. Merging zeroes
    the unit's input slice of the down-projection weight.

    The neuron-level unlearning methods (Zero, Act, Slim, HC, IG) subclass it and set `method`.

    Args:
        target_modules: the down projections (names or one regex). Default: the model's MLP down projections,
            found by module structure and names (`hf_memmit.models.mlp.find_mlps`) for any model type.
        exclude_modules, layers_to_transform, layers_pattern: as in other peft methods.
        trainable_coefficients: also give every unit a trainable real coefficient (initialised to 1) that
            multiplies its activation, for methods that learn per-neuron attributions (Slim, HC).
        method: the unlearning method that fitted the mask (None for a hand-made mask).
    """

    target_modules: list[str] | str | None = field(
        default=None, metadata={"help": "MLP down projections; default: found in the model."}
    )
    exclude_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules left out."})
    layers_to_transform: list[int] | int | None = field(
        default=None, metadata={"help": "Only these transformer block indices."}
    )
    layers_pattern: list[str] | str | None = field(
        default=None, metadata={"help": "Name of the block list (e.g. 'h' or 'layers') for layers_to_transform."}
    )
    trainable_coefficients: bool = field(
        default=False, metadata={"help": "Add a trainable per-neuron coefficient (init 1)."}
    )
    method: str | None = field(default=None, metadata={"help": "Unlearning method that fitted this mask."})
    task_type: str | None = field(default="CAUSAL_LM", metadata={"help": "Task type."})

    def __new__(cls, *args, **kwargs):
        return super().__new__(dispatch_method_config(NeuronMaskConfig, cls, kwargs))

    def __post_init__(self):
        super().__post_init__()
        finish_mask_config(self, MemmitPeftType.NEURON_MASK)
