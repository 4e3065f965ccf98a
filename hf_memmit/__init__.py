"""hf_memmit: find, measure and remove memorization in causal LMs with the Hugging Face stack."""

__version__ = "0.1.0"

from . import tuners  # noqa: F401  (registers the WEIGHT_MASK / NEURON_MASK adapter types with peft)
from .compat import warn_on_peft_version_gap
from .data import WindowStats, load_records, make_windows, tokenize_records, wiki_offline_texts
from .data import MathTokenizer, TinyMemDataConfig, data_config_of, gpt2_tokenizer, load_tinymem_dataset
from .hub import (load_adapter, load_tinymem, load_tinymem_data, push_adapter, push_checkpoint, push_dataset,
                  suite_model_name)
from .metrics import (MEMORIZATION_METRIC_PATH, Memorization, MemorizationCallback, MemorizationResult, greedy_match,
                      greedy_match_generate, match_tokens, measure_memorization, perplexity, token_accuracy)
from .metrics import ScanResult, scan_records, scan_windows
from .models import convert_gguf, load_causal_lm, model_fingerprint, smollm2_gguf_path, tinymem_config, tinymem_model
from .own_model import merge_adapter, scan_model, unlearn_records
from .tinymem import FinetuneConfig, TrainConfig, finetune_tinymem, run_unlearning, train_tinymem
from .trainers import (ExampleTiedDropoutConfig, ExampleTiedDropoutTrainer, LossTruncationConfig,
                       LossTruncationTrainer, MemSinksCollator, MemSinksConfig, MemSinksTrainer, SpectralNormConfig,
                       SpectralNormTrainer, TiedDropoutConfig, attach_tied_dropout, tied_dropout_mode)
from .tuners import MemmitPeftType, NeuronMaskConfig, WeightMaskConfig
from .unlearning import METHODS, get_method, make_config, method_names, neuron_scores, unlearn

# every registered unlearning method's config class (BalancedSubnetConfig, ZeroConfig, ...): a method file that
# registers itself is exported here without editing this file
_METHOD_CONFIGS = {method.config_class.__name__: method.config_class for method in METHODS.values()}
globals().update(_METHOD_CONFIGS)

__all__ = [
    # data and models
    "MathTokenizer", "TinyMemDataConfig", "TrainConfig", "data_config_of", "gpt2_tokenizer", "load_tinymem_dataset",
    "tinymem_config", "tinymem_model", "train_tinymem",
    # measurement
    "MEMORIZATION_METRIC_PATH", "Memorization", "MemorizationCallback", "MemorizationResult", "greedy_match",
    "greedy_match_generate", "match_tokens", "measure_memorization", "perplexity", "token_accuracy",
    # unlearning adapters (and, appended below, every registered method's config class)
    "METHODS", "MemmitPeftType", "NeuronMaskConfig", "WeightMaskConfig", "get_method", "make_config", "method_names",
    "neuron_scores", "run_unlearning", "unlearn",
    # train-time mitigation
    "ExampleTiedDropoutConfig", "ExampleTiedDropoutTrainer", "FinetuneConfig", "LossTruncationConfig",
    "LossTruncationTrainer", "MemSinksCollator", "MemSinksConfig", "MemSinksTrainer", "SpectralNormConfig",
    "SpectralNormTrainer", "TiedDropoutConfig", "attach_tied_dropout", "finetune_tinymem", "tied_dropout_mode",
    # your own model: records -> scan -> unlearn -> merge
    "ScanResult", "WindowStats", "convert_gguf", "load_causal_lm", "load_records", "make_windows", "merge_adapter",
    "model_fingerprint", "scan_model", "scan_records", "scan_windows", "smollm2_gguf_path", "tokenize_records",
    "unlearn_records", "wiki_offline_texts",
    # Hub
    "load_adapter", "load_tinymem", "load_tinymem_data", "push_adapter", "push_checkpoint", "push_dataset",
    "suite_model_name",
    *_METHOD_CONFIGS,
]

warn_on_peft_version_gap()  # once per process: a transformers that needs a newer peft than the installed one
