"""hf_memmit: find, measure and remove memorization in causal LMs with the Hugging Face stack."""

__version__ = "0.1.0"

from .data import MathTokenizer, TinyMemDataConfig, data_config_of, gpt2_tokenizer, load_tinymem_dataset
from .metrics import MemorizationResult, greedy_match, measure_memorization, perplexity, token_accuracy
from .models import TrainConfig, tinymem_config, tinymem_model, train_tinymem

__all__ = [
    "MathTokenizer", "MemorizationResult", "TinyMemDataConfig", "TrainConfig", "data_config_of", "gpt2_tokenizer",
    "greedy_match", "load_tinymem_dataset", "measure_memorization", "perplexity", "tinymem_config", "tinymem_model",
    "token_accuracy", "train_tinymem",
]
