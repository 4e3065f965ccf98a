"""What the loss-based methods share: a LoRA adapter (peft's own `LoraConfig`, every field passes through) and
the schedule of its training."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from peft import LoraConfig

from ...utils import check_int, check_range


@dataclass
class LossMethodConfig(LoraConfig):
    """A loss-based unlearning method trained into a LoRA adapter. Every `LoraConfig` field (`r`, `lora_alpha`,
    `target_modules`, `lora_dropout`, ...) passes through to peft; the defaults here are r = 8, alpha = 16 on
    every linear layer but the output embedding (`target_modules="all-linear"`). The adapter is peft's own LoRA:
    `save_pretrained` writes a plain LoRA `adapter_config.json` (the fields below describe the fitting, not the
    adapter, and are left out of it), and `PeftModel.from_pretrained`, `merge_and_unload` and `disable_adapter`
    work as for any LoRA.

    Args:
        lr: AdamW learning rate on the LoRA weights (> 0; suggested 1e-5 ... 1e-3).
        weight_decay: AdamW weight decay (>= 0).
        max_grad_norm: clip the gradient norm to this (None: no clipping).
        epochs: passes over the forget set (None: schedule by `max_steps` alone).
        max_steps: stop after this many optimizer steps (None: all `epochs`).
        forget_check_every, forget_check_rows: stop once the forget rows are no longer extractable, checked every
            this many steps on a sample of this many rows first (see `hf_memmit.unlearning.stopping`).
        batch_size: forget rows per step (and retain rows per step for the methods with a retain term).
        seed: shuffling.
    """

    method: str = "loss"
    r: int = 8
    lora_alpha: int = 16
    target_modules: list[str] | str | None = "all-linear"
    lr: float = field(default=1e-4, metadata={"help": "AdamW learning rate on the LoRA weights, > 0."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay, >= 0."})
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "Gradient-norm clipping (None: off)."})
    epochs: int | None = field(default=5, metadata={"help": "Passes over the forget rows (None: max_steps)."})
    max_steps: int | None = field(default=None, metadata={"help": "Stop after this many steps (None: epochs)."})
    forget_check_every: int | None = field(default=None, metadata={
        "help": "Check the forget rows every this many steps; stop when none is extractable (None: off)."})
    forget_check_rows: int | None = field(default=None, metadata={
        "help": "Rows sampled per check; all rows are checked only when the sample has none (None: all)."})
    batch_size: int = field(default=8, metadata={"help": "Forget (and retain) rows per step."})
    seed: int = field(default=0, metadata={"help": "Seed for shuffling."})

    def __post_init__(self):
        super().__post_init__()
        check_range("lr", self.lr, 0.0, float("inf"), low_open=True, high_open=True)
        check_range("weight_decay", self.weight_decay, 0.0, float("inf"), high_open=True)
        if self.max_grad_norm is not None:
            check_range("max_grad_norm", self.max_grad_norm, 0.0, float("inf"), low_open=True, high_open=True)
        if self.epochs is None and self.max_steps is None:
            raise ValueError("epochs=None schedules by optimizer steps; allowed: then set max_steps (an integer "
                             ">= 1), or give epochs")
        for name in ("epochs", "max_steps", "forget_check_every", "forget_check_rows"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("seed", self.seed, 0)

    def to_dict(self) -> dict:
        """The LoRA fields only: the saved adapter is a plain LoRA adapter that peft loads without hf_memmit."""
        own = {f.name for f in dataclasses.fields(self)} - {f.name for f in dataclasses.fields(LoraConfig)}
        return {k: v for k, v in super().to_dict().items() if k not in own}


@dataclass
class RetainTermConfig(LossMethodConfig):
    """A loss-based method with a retain term: `retain_weight` times the mean CE of a batch of retain rows (the
    retain set cycled, `batch_size` rows a step) is added to each step's forget loss. Needs a retain set.

    Args:
        retain_weight: weight of the retain CE term (>= 0; 1.0 is the usual choice).
    """

    retain_weight: float = field(default=1.0, metadata={"help": "Weight of the retain CE term, >= 0."})

    def __post_init__(self):
        super().__post_init__()
        check_range("retain_weight", self.retain_weight, 0.0, float("inf"), high_open=True)

