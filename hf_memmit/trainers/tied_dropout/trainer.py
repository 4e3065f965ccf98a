"""The Trainer that feeds each batch's keys to the tied-dropout hooks."""

from __future__ import annotations

import inspect

from transformers import Trainer
from transformers.trainer_utils import RemoveColumnsCollator

from .config import TiedDropoutConfig
from .hooks import attach_tied_dropout


class TiedDropoutTrainer(Trainer):
    """Trainer that hooks tied dropout onto its model and feeds each batch's keys (the `tied_keys` entry the
    collator adds) to the hooks. The loss is Trainer's own (same `num_items_in_batch` handling), so
    `loss_is_scaled_for_ga` keeps Trainer's rule. Keys stay set through backward (gradient checkpointing
    recomputes the forward there) and are cleared when the step ends."""

    keys_input = "tied_keys"

    def __init__(self, *args, method_config: TiedDropoutConfig, **kwargs):
        super().__init__(*args, **kwargs)
        if self.model is None:
            raise ValueError(f"{type(self).__name__} needs `model=` (model_init is not supported)")
        self.tied_dropout = attach_tied_dropout(self.model, method_config)

    def keep_columns(self, collator, columns: list[str]):
        """`collator`, receiving `columns` (ids) as well. Trainer's `remove_unused_columns` would drop them
        before any collator sees them (`Trainer._remove_unused_columns`), so turn it off and filter the other
        columns here, as Trainer would have."""
        if not self.args.remove_unused_columns:
            return collator
        self.args.remove_unused_columns = False
        forward = list(inspect.signature(self.model.forward).parameters)
        return RemoveColumnsCollator(collator, [*forward, "label", "label_ids", *self.label_names, *columns])

    def missing_keys_message(self, inputs: dict) -> str:
        return (f"{type(self).__name__}: the training batch has no {self.keys_input!r} (columns: "
                f"{sorted(inputs)}); the keys decide each row's units, so training cannot go on without them")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        keys = inputs.pop(self.keys_input, None)
        if keys is None and model.training:
            raise ValueError(self.missing_keys_message(inputs))
        if keys is not None:
            self.tied_dropout.set_keys(keys)
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def training_step(self, model, inputs, num_items_in_batch=None):
        try:
            return super().training_step(model, inputs, num_items_in_batch=num_items_in_batch)
        finally:
            self.tied_dropout.set_keys(None)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # keys are set here: without labels Trainer calls the model directly, not compute_loss
        self.tied_dropout.set_keys(inputs.pop(self.keys_input, None))
        try:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        finally:
            self.tied_dropout.set_keys(None)
