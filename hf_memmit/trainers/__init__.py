"""Train-time mitigation as `transformers.Trainer` subclasses: regularizers, fine-tuning recipes, MemSinks."""

from .example_tied_dropout import ExampleKeyCollator, ExampleTiedDropoutConfig, ExampleTiedDropoutTrainer
from .finetune import FinetuneConfig, finetune_rows, finetune_tinymem, finetune_trainer
from .loss_truncation import LossQuantile, LossTruncationConfig, LossTruncationTrainer, sequence_losses
from .memsinks import MemSinksCollator, MemSinksConfig, MemSinksTrainer, document_attention_mask, document_id
from .spectral_norm import SpectralNormConfig, SpectralNormRegularizer, SpectralNormTrainer, spectral_targets
from .tied_dropout import (TiedDropout, TiedDropoutConfig, TiedDropoutTrainer, attach_tied_dropout, get_tied_dropout,
                           tied_dropout_mode)

__all__ = [
    "ExampleKeyCollator", "ExampleTiedDropoutConfig", "ExampleTiedDropoutTrainer", "FinetuneConfig", "LossQuantile",
    "LossTruncationConfig", "LossTruncationTrainer", "MemSinksCollator", "MemSinksConfig", "MemSinksTrainer",
    "SpectralNormConfig", "SpectralNormRegularizer", "SpectralNormTrainer", "TiedDropout", "TiedDropoutConfig",
    "TiedDropoutTrainer", "attach_tied_dropout", "document_attention_mask", "document_id", "finetune_rows",
    "finetune_tinymem", "finetune_trainer", "get_tied_dropout", "sequence_losses", "spectral_targets",
    "tied_dropout_mode",
]
