"""hf_memmit: find, measure and remove memorization in causal LMs with the Hugging Face stack.

`import hf_memmit` registers the mask adapter types with peft (so a saved adapter loads) and nothing more: every
other public name loads its subpackage on first use (PEP 562 `__getattr__`), so `datasets`, `evaluate` and the
Hub client's upload and card code are not imported by a process that only loads an adapter.
"""

from __future__ import annotations

import importlib

from . import tuners  # noqa: F401  (registers the WEIGHT_MASK / NEURON_MASK adapter types with peft)
from .compat import warn_on_peft_version_gap
from .tuners import MemmitPeftType, NeuronMaskConfig, WeightMaskConfig  # noqa: F401  (public, eager: cheap)

__version__ = "0.1.0"

# public name -> the subpackage that defines it, grouped as users meet them. Internals (the method table,
# make_config, match_tokens, suite_model_name, ...) stay in their subpackages.
_EXPORTS = {
    # data and models
    "data": ("MathTokenizer", "TinyMemDataConfig", "data_config_of", "gpt2_tokenizer", "load_tinymem_dataset",
             "WindowStats", "load_records", "make_windows", "tokenize_records", "wiki_offline_texts"),
    "models": ("convert_gguf", "load_causal_lm", "model_fingerprint", "smollm2_gguf_path", "tinymem_config",
               "tinymem_model"),
    # measurement and the result types it returns
    "metrics": ("MEMORIZATION_METRIC_PATH", "GreedyMatch", "Memorization", "MemorizationCallback",
                "MemorizationResult", "ScanResult", "greedy_match", "greedy_match_generate", "measure_memorization",
                "perplexity", "scan_records", "scan_windows", "token_accuracy"),
    # unlearning adapters (every registered method's config class is found through the registry, below)
    "unlearning": ("get_method", "method_names", "neuron_scores", "unlearn"),
    # train-time mitigation
    "trainers": ("ExampleTiedDropoutConfig", "ExampleTiedDropoutTrainer", "GoldfishConfig", "GoldfishLossTrainer",
                 "LossTruncationConfig",
                 "LossTruncationTrainer", "MemSinksCollator", "MemSinksConfig", "MemSinksTrainer",
                 "SpectralNormConfig", "SpectralNormTrainer", "TiedDropoutConfig", "attach_tied_dropout",
                 "tied_dropout_mode"),
    # the TinyMem workflow
    "tinymem": ("FinetuneConfig", "TrainConfig", "finetune_tinymem", "run_unlearning", "train_tinymem"),
    # your own model: records -> scan -> unlearn -> merge
    "own_model": ("merge_adapter", "scan_model", "unlearn_records"),
    # the paper's comparison on your own settings: sweeps, best-run selection, tables and plots
    "bench": ("run_bench", "write_report"),
    # Hub
    "hub": ("TinyMemCheckpoint", "load_adapter", "load_tinymem", "load_tinymem_data", "push_adapter",
            "push_checkpoint", "push_dataset"),
}
_HOME = {name: package for package, names in _EXPORTS.items() for name in names}
_EAGER = ("MemmitPeftType", "NeuronMaskConfig", "WeightMaskConfig")
_SUBPACKAGES = ("bench", "cli", "compat", "data", "hub", "metrics", "models", "own_model", "tinymem", "trainers", "tuners",
                "unlearning", "utils")


def _method_configs() -> dict[str, type]:
    """Every registered unlearning method's config class by name (BalancedSubnetConfig, ZeroConfig, ...): a
    method file that registers itself is exported without editing this file."""
    from .unlearning import METHODS

    return {method.config_class.__name__: method.config_class for method in METHODS.values()}


def __getattr__(name: str):
    if name in _HOME:
        value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
        globals()[name] = value  # found once, then a plain attribute
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name == "__all__":  # computed on each use: it lists methods registered after the import too
        return sorted([*_EAGER, *_HOME, *_method_configs()])
    if name.endswith("Config"):
        configs = _method_configs()
        if name in configs:
            return configs[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__getattr__("__all__")))


warn_on_peft_version_gap()  # once per process: a transformers that needs a newer peft than the installed one
