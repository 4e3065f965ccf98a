"""Pieces both mask tuners share: our PEFT types, bit packing, the ratio rule, default targets, target checks."""

from __future__ import annotations

import contextlib
import enum

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D


class MemmitPeftType(str, enum.Enum):
    """PEFT types of hf_memmit. peft's own `PeftType` is closed, so third-party methods bring a `str` Enum:
    members compare and hash like their strings (so `"WEIGHT_MASK"` read back from adapter_config.json finds
    them) and have the `.value` that transformers' adapter code calls."""

    WEIGHT_MASK = "WEIGHT_MASK"
    NEURON_MASK = "NEURON_MASK"


_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)  # most significant bit first, as numpy.packbits


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Bool tensor of any shape -> flat uint8 tensor of ceil(numel / 8) bytes (numpy.packbits bit order).
    Padding bits are 1, i.e. "keep"."""
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_ones(pad)])
    return (flat.view(-1, 8) << _SHIFTS.to(flat.device)).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Inverse of `pack_bits`: flat uint8 -> bool tensor of `shape`."""
    numel = 1
    for s in shape:
        numel *= s
    bits = (packed.unsqueeze(1) >> _SHIFTS.to(packed.device)) & 1
    return bits.reshape(-1)[:numel].view(shape).bool()


def n_masked(ratio: float, numel: int) -> int:
    """The ratio rule every method shares: `ratio` is the fraction of targeted weights that get masked,
    rounded down (as the reference's sort-based top-k). Methods say whether they apply it per tensor or
    jointly over all targeted tensors."""
    return int(ratio * numel)


def lowest_k_mask(magnitude: torch.Tensor, k: int) -> torch.Tensor:
    """Keep mask (same shape and dtype as `magnitude`): 0 at the k smallest entries, 1 elsewhere."""
    keep = torch.ones_like(magnitude)
    if k > 0:
        idx = torch.topk(magnitude.detach().reshape(-1), k, largest=False, sorted=False).indices
        keep.view(-1)[idx] = 0
    return keep


class StraightThroughMask(torch.autograd.Function):
    """Forward: the hard 0/1 mask of `lowest_k_mask`. Backward: the gradient passes to the scores unchanged,
    so pruned weights keep receiving a signal and can come back."""

    @staticmethod
    def forward(ctx, magnitude: torch.Tensor, k: int) -> torch.Tensor:
        return lowest_k_mask(magnitude, k)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def mlp_helpers():
    """`hf_memmit.models.mlp`, the one place that knows where a model's MLP projections are. Imported on use:
    this package is imported first of all (it registers the peft types), before the models package."""
    from ..models import mlp

    return mlp


def layer_index(module_name: str) -> int:
    """Transformer block index in a module name such as `transformer.h.3.mlp.c_proj` (-> 3)."""
    index = mlp_helpers().block_index(module_name)
    if index is None:
        raise ValueError(f"module {module_name!r} has no layer index; allowed: names like 'transformer.h.0.mlp.c_proj'")
    return index


def check_maskable(model: nn.Module, base: nn.Module, name: str) -> None:
    """Refuse targets a mask cannot edit safely: weights shared with another module (tied embeddings: masking
    lm_head would also mask wte, and merging would write the mask into both) and layers that are not
    linear maps."""
    weight = getattr(base, "weight", None)
    if isinstance(weight, torch.Tensor):
        owner = name + "."
        shared = [n for n, p in model.named_parameters(remove_duplicate=False)
                  if p is weight and not n.startswith(owner)]
        if shared:
            raise ValueError(
                f"target module {name!r} shares its weight with {shared[0]!r} (tied embeddings); a mask on it "
                f"would also edit {shared[0]!r} and cannot be merged. Allowed: untied linear layers such as the "
                f"MLP projections; drop {name!r} from target_modules or load the model with tie_word_embeddings=False"
            )
    if not isinstance(base, (nn.Linear, Conv1D)):
        raise ValueError(
            f"target module {name!r} is a {type(base).__name__}; allowed: torch.nn.Linear or "
            "transformers Conv1D layers (for example GPT-2 'mlp.c_fc'/'mlp.c_proj', Llama 'mlp.down_proj')"
        )


def register_zero3_external(layer: nn.Module, params) -> None:
    """Parameters `layer`'s forward reads although they belong to other modules (the base layer's weight and
    bias, the scores in a ParameterDict) must be registered with DeepSpeed as external to `layer`, so that
    ZeRO-3 gathers them when `layer` runs. A no-op unless DeepSpeed is installed and the parameters are
    partitioned or ZeRO-3 is enabled (transformers' flag, set by a Trainer with a ZeRO-3 config)."""
    params = [p for p in params if isinstance(p, nn.Parameter)]
    from transformers.integrations import is_deepspeed_zero3_enabled

    if params and (is_deepspeed_zero3_enabled() or any(hasattr(p, "ds_id") for p in params)):
        import deepspeed

        for p in params:
            deepspeed.zero.register_external_parameter(layer, p)


def full_shape(param: torch.Tensor) -> torch.Size:
    """A parameter's shape, also when DeepSpeed ZeRO-3 has partitioned it (its `.shape` is then empty)."""
    return getattr(param, "ds_shape", None) or param.shape


def zero3_gathered(params):
    """Context in which ZeRO-3-partitioned `params` hold their full values (read only); a no-op otherwise."""
    params = [p for p in params if hasattr(p, "ds_id")]
    if not params:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def dispatch_method_config(base: type, cls: type, kwargs: dict) -> type:
    """peft rebuilds a saved config as `REGISTERED_CLASS(**adapter_config_json)`. All methods of a tuner share
    one peft type, so the registered class is the tuner's base config; the saved `method` field picks the
    method's own config class (a subclass defining that `method` default), keeping its hyperparameters."""
    method = kwargs.get("method")
    if cls is not base or not method:
        return cls
    todo = list(base.__subclasses__())
    while todo:
        sub = todo.pop()
        if sub.__dict__.get("method") == method:
            return sub
        todo.extend(sub.__subclasses__())
    return cls


def finish_mask_config(config, peft_type: MemmitPeftType) -> None:
    """What both mask configs' `__post_init__` do after peft's: fix the peft type, check that a method's config
    class carries its own method name, and turn module lists into sets (peft matches sets by suffix)."""
    config.peft_type = peft_type
    expected = getattr(type(config), "method", None)
    if expected is not None and config.method != expected:
        raise ValueError(f"method={config.method!r} does not fit {type(config).__name__}; allowed: {expected!r}")
    if isinstance(config.target_modules, list):
        config.target_modules = set(config.target_modules)
    if isinstance(config.exclude_modules, list):
        config.exclude_modules = set(config.exclude_modules)


def default_targets(peft_config, model: nn.Module, part: str):
    """Fill `target_modules` when the user gave none: a regex naming the model's MLP projections (`part="all"`)
    or its MLP down projections (`"down"`), found by module structure (`hf_memmit.models.mlp.find_mlps`), so
    any model type with a known MLP layout works. GPT-2 and Llama-family models get the same regexes as
    before (`.*\\.mlp\\.(c_fc|c_proj)`, `.*\\.mlp\\.(gate_proj|up_proj|down_proj)`, `.*\\.mlp\\.c_proj`,
    `.*\\.mlp\\.down_proj`). A saved adapter keeps its own target_modules in adapter_config.json."""
    if peft_config.target_modules is None:
        peft_config.target_modules = mlp_helpers().mlp_target_regex(model, part)
    return peft_config
