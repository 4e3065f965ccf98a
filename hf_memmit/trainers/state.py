"""Regularizer state that travels with Trainer checkpoints (safetensors), so a resumed run continues exactly.

Trainer's own `ExportableState` puts callback state into `trainer_state.json` but only restores it when
`restore_callback_states_from_checkpoint=True`, and then replaces the callback object. Tensors (power-iteration
vectors, a loss buffer) belong in a tensor file next to the weights instead, written by the documented `_save`
hook (before `trainer_state.json`, which marks a checkpoint complete) and read back in `_load_from_checkpoint`.
`save_model` goes through `_save` too, so a final model folder carries the file as well: the state to continue
training from; `from_pretrained` ignores it.
"""

from __future__ import annotations

import os

import torch
from safetensors.torch import load_file, save

from ..utils import atomic_write_bytes


class CheckpointedStateMixin:
    """Mix into a `Trainer` subclass that defines `state_file`, `regularizer_state()` and
    `load_regularizer_state(tensors)`; its state is then saved with every checkpoint and restored on resume."""

    state_file: str

    def regularizer_state(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_regularizer_state(self, tensors: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.regularizer_state().items()}
        atomic_write_bytes(os.path.join(output_dir, self.state_file), save(tensors))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, self.state_file)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{resume_from_checkpoint} has no {self.state_file}: it was written by another trainer; resume it "
                f"with that trainer or start this run over")
        self.load_regularizer_state(load_file(path))


def task_loss_for_step(trainer, loss: torch.Tensor, num_items_in_batch) -> torch.Tensor:
    """The task loss as a share of the optimizer step's loss. Trainer's `compute_loss` returns it already divided
    by the step's token count when the model (or `compute_loss_func`) took `num_items_in_batch`; otherwise it is a
    micro-batch mean that still needs dividing by the accumulation steps. Trainers using this set
    `loss_is_scaled_for_ga = True`, so Trainer does not divide a second time."""
    scaled = (trainer.model_accepts_loss_kwargs and num_items_in_batch is not None) or \
        trainer.compute_loss_func is not None
    return loss if scaled else loss / trainer.current_gradient_accumulation_steps


def step_token_count(trainer, token_count: torch.Tensor, num_items_in_batch):
    """The optimizer step's token count, to divide a summed token loss by: Trainer's `num_items_in_batch` (counted
    over all micro-batches and processes; DDP then averages gradients, so that average is undone as Trainer
    does), or without it this micro-batch's count times the accumulation steps."""
    if num_items_in_batch is not None:
        return num_items_in_batch / (trainer.accelerator.num_processes if trainer.args.average_tokens_across_devices
                                     else 1)
    return token_count.sum().clamp(min=1) * getattr(trainer, "current_gradient_accumulation_steps", 1)


def forward_without_labels(trainer, model, inputs: dict):
    """(model outputs, labels) of a training batch, the model run without its own loss so that a trainer can
    weigh the per-token losses itself."""
    if "labels" not in inputs:
        raise ValueError(f"{type(trainer).__name__} needs `labels` in the batch to score each token")
    inputs = dict(inputs)
    labels = inputs.pop("labels")
    return model(**inputs), labels

