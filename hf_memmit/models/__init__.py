from .config import LAYERS, tinymem_config, tinymem_model
from .gguf import convert_gguf, supported_gguf_architectures
from .identity import model_fingerprint
from .load import load_causal_lm
from .mlp import MLPBlock, find_mlps
from .offline import smollm2_gguf_path
from .training import (TrainConfig, causal_lm_collator, is_finished, last_complete_checkpoint, make_trainer,
                       train_tinymem)

__all__ = [
    # TinyMem models
    "LAYERS", "TrainConfig", "causal_lm_collator", "is_finished", "last_complete_checkpoint", "make_trainer",
    "tinymem_config", "tinymem_model", "train_tinymem",
    # any Hugging Face causal LM: a Hub id, a local folder or a .gguf file (converted once to a cached folder)
    "MLPBlock", "convert_gguf", "find_mlps", "load_causal_lm", "model_fingerprint", "smollm2_gguf_path",
    "supported_gguf_architectures",
]
