"""TinyMem on the Hugging Face Hub: push datasets, checkpoints and unlearning adapters with cards; load them back."""

from .cards import adapter_card, dataset_card, model_card
from .load import TinyMemCheckpoint, load_adapter, load_tinymem, load_tinymem_data
from .naming import DATASET_REPO_NAME, check_repo_id, dataset_config_name, suite_model_name
from .push import export_adapter, export_checkpoint, push_adapter, push_checkpoint, push_dataset
from .suite import SuiteCell, run_suite, suite_grid

__all__ = ["DATASET_REPO_NAME", "SuiteCell", "TinyMemCheckpoint", "adapter_card", "check_repo_id", "dataset_card",
           "dataset_config_name", "export_adapter", "export_checkpoint", "load_adapter", "load_tinymem",
           "load_tinymem_data", "model_card", "push_adapter", "push_checkpoint", "push_dataset", "run_suite",
           "suite_grid", "suite_model_name"]
