"""Train-time mitigation as `transformers.Trainer` subclasses: regularizers, fine-tuning recipes, MemSinks."""

# importing a regularizer's file registers it; this order is the order `regularizer_names()` lists them
from .spectral_norm import SpectralNormConfig, SpectralNormRegularizer, SpectralNormTrainer, spectral_targets  # isort: skip
from .loss_truncation import LossQuantile, LossTruncationConfig, LossTruncationTrainer, sequence_losses  # isort: skip
from .example_tied_dropout import ExampleKeyCollator, ExampleTiedDropoutConfig, ExampleTiedDropoutTrainer  # isort: skip
from .memsinks import MemSinksCollator, MemSinksConfig, MemSinksTrainer, document_attention_mask, document_id  # isort: skip
from .finetune import FinetuneConfig, finetune_rows, finetune_tinymem, finetune_trainer
from .registry import (REGULARIZERS, Regularizer, get_regularizer, register_regularizer, regularizer_names,
                       regularizer_trainer, unregister_regularizer)
from .tied_dropout import (TiedDropout, TiedDropoutConfig, TiedDropoutTrainer, attach_tied_dropout, get_tied_dropout,
                           tied_dropout_mode)

__all__ = [
    "REGULARIZERS", "Regularizer", "get_regularizer", "register_regularizer", "regularizer_names",
    "regularizer_trainer", "unregister_regularizer",
    "ExampleKeyCollator", "ExampleTiedDropoutConfig", "ExampleTiedDropoutTrainer", "FinetuneConfig", "LossQuantile",
    "LossTruncationConfig", "LossTruncationTrainer", "MemSinksCollator", "MemSinksConfig", "MemSinksTrainer",
    "SpectralNormConfig", "SpectralNormRegularizer", "SpectralNormTrainer", "TiedDropout", "TiedDropoutConfig",
    "TiedDropoutTrainer", "attach_tied_dropout", "document_attention_mask", "document_id", "finetune_rows",
    "finetune_tinymem", "finetune_trainer", "get_tied_dropout", "sequence_losses", "spectral_targets",
    "tied_dropout_mode",
]
