"""Train-time mitigation as `transformers.Trainer` subclasses: regularizers and MemSinks, each registered by its
own file (`registry`). The fine-tuning recipes of a TinyMem run live in `hf_memmit.tinymem`."""

# importing a regularizer's file registers it; this order is the order `regularizer_names()` lists them
# isort: off
from .spectral_norm import SpectralNormConfig, SpectralNormRegularizer, SpectralNormTrainer, spectral_targets
from .loss_truncation import LossQuantile, LossTruncationConfig, LossTruncationTrainer, sequence_losses
from .goldfish import GoldfishConfig, GoldfishLossTrainer, goldfish_dropped
from .tied_dropout.example_tied import ExampleKeyCollator, ExampleTiedDropoutConfig, ExampleTiedDropoutTrainer
from .tied_dropout.memsinks import (MemSinksCollator, MemSinksConfig, MemSinksTrainer, document_attention_mask,
                                    document_id)
# isort: on
from .registry import (REGULARIZERS, Regularizer, get_regularizer, register_regularizer, regularizer_names,
                       regularizer_trainer, unregister_regularizer)
from .tied_dropout import (TiedDropout, TiedDropoutConfig, TiedDropoutTrainer, attach_tied_dropout, get_tied_dropout,
                           tied_dropout_mode)

__all__ = [
    "REGULARIZERS", "Regularizer", "get_regularizer", "register_regularizer", "regularizer_names",
    "regularizer_trainer", "unregister_regularizer",
    "ExampleKeyCollator", "ExampleTiedDropoutConfig", "ExampleTiedDropoutTrainer", "GoldfishConfig",
    "GoldfishLossTrainer", "LossQuantile",
    "LossTruncationConfig", "LossTruncationTrainer", "MemSinksCollator", "MemSinksConfig", "MemSinksTrainer",
    "SpectralNormConfig", "SpectralNormRegularizer", "SpectralNormTrainer", "TiedDropout", "TiedDropoutConfig",
    "TiedDropoutTrainer", "attach_tied_dropout", "document_attention_mask", "document_id", "get_tied_dropout",
    "goldfish_dropped", "sequence_losses", "spectral_targets",
    "tied_dropout_mode",
]
