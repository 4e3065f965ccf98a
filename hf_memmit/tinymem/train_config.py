"""The optimizer and schedule of a TinyMem run, with per-(task, artifact, profile) defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..data import TinyMemDataConfig
from ..utils import check_choice, check_range

SCHEDULES = ("constant", "cosine", "linear")

# (task, artifact, profile) -> training defaults. `paper` is the TinyMem training setup of Sakarvadia et al.
# 2025 ("Mitigating Memorization in Language Models"); `quick` makes the models memorize their
# artifacts within minutes on 2 CPU cores (batch 32 costs no more per row than 128 on CPU and gives 4x the
# steps; warm-up avoids a trivial plateau); `tiny` trains a small memorizing model for tests.
_PAPER = dict(batch_size=128, learning_rate=1e-3, schedule="constant", warmup=0.0)
_QUICK = dict(batch_size=32, learning_rate=2e-3, schedule="cosine", warmup=0.05)
_DEFAULTS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("math", "noise", "paper"): dict(_PAPER, epochs=3500, eval_every=50, save_every=50),
    ("math", "backdoor", "paper"): dict(_PAPER, epochs=500, eval_every=50, save_every=50),
    ("language", "noise", "paper"): dict(_PAPER, epochs=100, eval_every=10, save_every=10),
    ("language", "backdoor", "paper"): dict(_PAPER, epochs=50, eval_every=10, save_every=10),
    ("math", "noise", "quick"): dict(_QUICK, epochs=45, eval_every=5, save_every=5),
    ("math", "backdoor", "quick"): dict(_QUICK, epochs=10, eval_every=1, save_every=2),
    ("language", "noise", "quick"): dict(_QUICK, batch_size=16, epochs=2, eval_every=0.25, save_every=0.5),
    ("language", "backdoor", "quick"): dict(_QUICK, batch_size=16, epochs=1, eval_every=0.25, save_every=0.5),
    ("math", "noise", "tiny"): dict(_QUICK, epochs=40, eval_every=10, save_every=10),
    ("math", "backdoor", "tiny"): dict(_QUICK, epochs=10, eval_every=2, save_every=5),
    ("language", "noise", "tiny"): dict(_QUICK, batch_size=16, epochs=1, eval_every=0.5, save_every=0.5),
    ("language", "backdoor", "tiny"): dict(_QUICK, batch_size=16, epochs=1, eval_every=0.5, save_every=0.5),
}
_QUICK_EPOCHS_BY_LAYERS = {("math", "noise"): {2: 80}}  # 2-layer math+noise needs more epochs than 4


@dataclass
class TrainConfig:
    """Optimizer and schedule of a TinyMem run; `None` fields take the profile's defaults.

    AdamW with betas (0.9, 0.98) and weight decay 0.1 as the paper; no gradient clipping; the loss is the
    mean token cross-entropy over all 149 shifted positions, pads included (as the paper trains).
    `eval_every` / `save_every` are in epochs and may be fractional.
    """

    n_layer: int = 4
    epochs: float | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    schedule: str | None = None
    warmup: float | None = None
    weight_decay: float = 0.1
    adam_beta2: float = 0.98
    eval_every: float | None = None
    save_every: float | None = None
    eval_batch_size: int = 128
    allow_custom_layers: bool = False
    torch_compile: bool = False
    bf16: bool = False

    def resolve(self, data: TinyMemDataConfig) -> "TrainConfig":
        out = dataclasses.replace(self)
        defaults = dict(_DEFAULTS[(data.task, data.artifact, data.profile)])
        if data.profile == "quick":
            defaults["epochs"] = _QUICK_EPOCHS_BY_LAYERS.get((data.task, data.artifact), {}).get(
                self.n_layer, defaults["epochs"])
        for name, value in defaults.items():
            if getattr(out, name) is None:
                setattr(out, name, value)
        check_choice("schedule", out.schedule, SCHEDULES)
        check_range("warmup", out.warmup, 0.0, 1.0, high_open=True)
        for name in ("epochs", "batch_size", "learning_rate", "eval_every", "save_every"):
            if getattr(out, name) <= 0:
                raise ValueError(f"{name}={getattr(out, name)!r} must be positive")
        return out
