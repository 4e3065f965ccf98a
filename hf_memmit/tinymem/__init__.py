"""The TinyMem run workflow (Sakarvadia et al. 2025, "Mitigating Memorization in Language Models"): train a
model that memorizes its artifacts into a run directory, evaluate it, and mitigate it by fine-tuning or
unlearning, each step recording its numbers next to the model."""

from .evaluate import TinyMemMetricsCallback, evaluate_tinymem, measure_model
from .finetune import RESULT_FILE as FINETUNE_FILE
from .finetune import FinetuneConfig, finetune_rows, finetune_tinymem, finetune_trainer
from .run_dir import RUN_FILE, is_finished, load_run, read_run_info, run_data_config, write_run_info
from .train import causal_lm_collator, last_complete_checkpoint, make_trainer, tokenizer_for, train_tinymem
from .train_config import SCHEDULES, TrainConfig
from .unlearn import UnlearningSetup, forget_set, prepare_unlearning, run_unlearning, unlearn_prepared

__all__ = [
    "FINETUNE_FILE",
    "RUN_FILE",
    "SCHEDULES",
    "FinetuneConfig",
    "TinyMemMetricsCallback",
    "TrainConfig",
    "UnlearningSetup",
    "causal_lm_collator",
    "evaluate_tinymem",
    "finetune_rows",
    "finetune_tinymem",
    "finetune_trainer",
    "forget_set",
    "is_finished",
    "last_complete_checkpoint",
    "load_run",
    "make_trainer",
    "measure_model",
    "prepare_unlearning",
    "read_run_info",
    "run_data_config",
    "run_unlearning",
    "tokenizer_for",
    "train_tinymem",
    "unlearn_prepared",
    "write_run_info",
]
