from .config import LAYERS, tinymem_config, tinymem_model
from .training import (TrainConfig, causal_lm_collator, is_finished, last_complete_checkpoint, make_trainer,
                       train_tinymem)

__all__ = ["LAYERS", "TrainConfig", "causal_lm_collator", "is_finished", "last_complete_checkpoint", "make_trainer", "tinymem_config",
           "tinymem_model", "train_tinymem"]
