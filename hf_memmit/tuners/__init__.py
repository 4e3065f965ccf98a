"""hf_memmit's PEFT methods: a weight mask and a neuron mask, registered with peft on import.

peft's `register_peft_method` only accepts members of its own closed `PeftType`, so we fill peft's lookup
tables directly with members of our `str` Enum `MemmitPeftType`. Consequence for users: a saved mask adapter
loads (`PeftModel.from_pretrained`, `PeftConfig.from_pretrained`, transformers `model.load_adapter`) only in
a process that ran `import hf_memmit` first. Without it peft fails with `KeyError: 'WEIGHT_MASK'` (or
`'NEURON_MASK'`), which means exactly that: import hf_memmit, then load.
"""

from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

from .common import MemmitPeftType, n_masked, pack_bits, unpack_bits
from .neuron_mask import NeuronMaskConfig, NeuronMaskLayer, NeuronMaskLinear, NeuronMaskModel
from .weight_mask import WeightMaskConfig, WeightMaskLayer, WeightMaskLinear, WeightMaskModel

__all__ = [
    "MemmitPeftType", "NeuronMaskConfig", "NeuronMaskLayer", "NeuronMaskLinear", "NeuronMaskModel",
    "WeightMaskConfig", "WeightMaskLayer", "WeightMaskLinear", "WeightMaskModel",
    "n_masked", "pack_bits", "unpack_bits",
]


def _register() -> None:
    # plain assignment: a repeated registration (importlib.reload) points peft at the current classes
    for peft_type, config_cls, model_cls in (
        (MemmitPeftType.WEIGHT_MASK, WeightMaskConfig, WeightMaskModel),
        (MemmitPeftType.NEURON_MASK, NeuronMaskConfig, NeuronMaskModel),
    ):
        # transformers derives the key prefix from the type: prefix == peft_type.value.lower() + "_"
        if model_cls.prefix != peft_type.value.lower() + "_":
            raise ValueError(f"{model_cls.__name__}.prefix={model_cls.prefix!r}; allowed: "
                             f"{peft_type.value.lower() + '_'!r} (transformers derives it from the peft type)")
        PEFT_TYPE_TO_PREFIX_MAPPING[peft_type] = model_cls.prefix
        PEFT_TYPE_TO_CONFIG_MAPPING[peft_type] = config_cls
        PEFT_TYPE_TO_TUNER_MAPPING[peft_type] = model_cls


_register()
