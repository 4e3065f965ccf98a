"""What a model is: is it a causal LM, which base model is it (to refuse an adapter on another one), and which
checkpoint of it (its weights)."""

from __future__ import annotations

import hashlib
import json
from typing import Any



CAUSAL_LM_EXAMPLES = "llama, qwen2, gemma3, gpt_neox, gpt2"
# Config keys that describe how a model was loaded, not which model it is (left out of `model_fingerprint`).
_VOLATILE_CONFIG_KEYS = ("_name_or_path", "_model_name_or_path", "name_or_path", "transformers_version", "dtype",
                         "torch_dtype", "architectures", "use_cache", "quantization_config", "_attn_implementation",
                         "_attn_implementation_internal", "_experts_implementation", "output_attentions",
                         "output_hidden_states", "return_dict")



def not_causal_lm_reason(config) -> str | None:
    """Why `config` is not a decoder-only causal LM that `AutoModelForCausalLM` builds, or None if it is."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return f"model type {model_type!r} has no AutoModelForCausalLM class"
    if getattr(config, "is_encoder_decoder", False):
        return f"model type {model_type!r} is an encoder-decoder"
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False):
        return f"model type {model_type!r} is an encoder (masked LM) config without is_decoder=True"
    return None



def model_fingerprint(model) -> dict[str, Any]:
    """Identify a base model: `{"model_type", "model_class", "name_or_path", "n_parameters", "dtype", "sha256"}`.

    `sha256` covers the model class, the config (`to_json_string()` minus keys that describe how it was loaded,
    not what it is: name/path, dtype, transformers version, architectures, use_cache, attention implementation,
    quantization) and every state-dict entry's name and shape. It is the same for a model loaded from a Hub id,
    a folder or a converted GGUF, in any dtype or on any device; two fingerprints with different `sha256` are
    different base models. A GGUF conversion has its own fingerprint, not that of the HF checkpoint it was made
    from (its config is rebuilt from GGUF metadata, and its weights went through quantization anyway).
    Compute it on the plain base model (not on a PEFT-wrapped one).
    """
    config = model.config
    cfg = json.loads(config.to_json_string())
    for key in _VOLATILE_CONFIG_KEYS:
        cfg.pop(key, None)
    shapes = [[name, list(t.shape)] for name, t in sorted(model.state_dict().items())]
    payload = json.dumps({"class": type(model).__name__, "config": cfg, "shapes": shapes}, sort_keys=True,
                         default=str)
    return {
        "model_type": getattr(config, "model_type", None),
        "model_class": type(model).__name__,
        "name_or_path": getattr(config, "name_or_path", None) or getattr(config, "_name_or_path", None),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(getattr(model, "dtype", "")).replace("torch.", ""),
        "sha256": hashlib.sha256(payload.encode()).hexdigest(),
    }


def weight_sums(model) -> list[float]:
    """One float64 sum per parameter tensor: tells two checkpoints of one architecture apart (a fine-tuned model
    from its base), unlike the config-and-shapes fingerprint; robust to the dtype the model was loaded in. Weights a
    `device_map` offloaded to disk are read back one module at a time (Accelerate's `align_module_device`)."""
    import torch
    from accelerate.utils import align_module_device

    names = {name for name, _ in model.named_parameters()}  # tied weights once, under their first name
    sums = {}
    with torch.no_grad():
        for prefix, module in model.named_modules():
            with align_module_device(module):
                for name, p in module.named_parameters(prefix=prefix, recurse=False):
                    if name in names:
                        sums[name] = float(p.detach().double().sum())
    return [sums[name] for name in sorted(sums)]


def same_weights(expected: list[float] | None, found: list[float], rel: float = 1e-3) -> bool:
    """Per-tensor sums agree (up to bf16/fp32 rounding); True when the record has none to compare."""
    if expected is None:
        return True
    return len(expected) == len(found) and all(abs(a - b) <= rel * max(1.0, abs(a)) for a, b in zip(expected, found))
