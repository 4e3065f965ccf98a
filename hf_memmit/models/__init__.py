from .config import LAYERS, tinymem_config, tinymem_model
from .gguf import convert_gguf, supported_gguf_architectures
from .identity import model_fingerprint, same_weights, weight_sums
from .load import DEVICE_MAPS, load_causal_lm
from .mlp import MLPBlock, find_mlps
from .offline import smollm2_gguf_path

__all__ = [
    # TinyMem models
    "LAYERS", "tinymem_config", "tinymem_model",
    # any Hugging Face causal LM: a Hub id, a local folder or a .gguf file (converted once to a cached folder)
    "DEVICE_MAPS", "MLPBlock", "convert_gguf", "find_mlps", "load_causal_lm", "model_fingerprint", "smollm2_gguf_path",
    "same_weights", "supported_gguf_architectures", "weight_sums",
]
