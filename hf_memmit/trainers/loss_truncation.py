"""Loss truncation (Kang & Hashimoto, ACL 2020) as a `Trainer` subclass.

After a warm-up of plain log-loss training, sequences whose mean token loss is at or above a running quantile
of recent per-sequence losses get weight 0: the highest-loss `drop_fraction` of the data, which in TinyMem is
where the noised rows sit until they are memorized. Differences from the reference `LossDropper`, all
deliberate: the ring buffer, counters and cutoff are saved in checkpoints; non-finite losses
are dropped and never enter the buffer (one NaN there stalls the reference silently); the cutoff is refreshed at
optimizer-step boundaries, so gradient accumulation equals a larger batch; losses are gathered across processes
before the buffer update, so every rank keeps the same quantile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers import Trainer
from transformers.utils import logging

from ..metrics.cross_entropy import next_token_losses
from ..utils import check_choice
from .registry import register_regularizer
from .state import CheckpointedStateMixin, forward_without_labels, step_token_count

logger = logging.get_logger(__name__)
NORMALIZE = ("batch", "kept")


@dataclass
class LossTruncationConfig:
    """Args:
        drop_fraction: share of the highest-loss sequences dropped after warm-up, in [0, 1). Kang & Hashimoto's
            `dropc` (their default 0.4; TinyMem's grid 0.01, 0.05, 0.1).
        min_count: warm-up, in sequences: nothing is dropped before this many losses were seen (reference 10000).
        buffer_size: how many recent per-sequence losses the quantile is taken over (reference 10000).
        recompute_every: sequences between refreshes of the cutoff (reference 10000).
        normalize: "batch" divides the kept losses by the whole batch's token count (the reference: the effective
            learning rate shrinks by about 1 - drop_fraction); "kept" also divides by (1 - drop_fraction) once
            truncation is on, the expected kept share, so the step size matches plain training.
    """

    drop_fraction: float = 0.1
    min_count: int = 10000
    buffer_size: int = 10000
    recompute_every: int = 10000
    normalize: str = "batch"

    def __post_init__(self):
        if not isinstance(self.drop_fraction, (int, float)) or not 0 <= self.drop_fraction < 1:  # NaN fails too
            raise ValueError(f"drop_fraction={self.drop_fraction!r} is out of range; allowed: [0, 1)")
        for name in ("min_count", "buffer_size", "recompute_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is out of range; allowed: integers >= 1")
        check_choice("normalize", self.normalize, NORMALIZE)


def sequence_losses(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100):
    """(summed token loss, number of predicted tokens) per sequence of a causal LM; labels are unshifted, as
    Hugging Face causal LMs take them, and `ignore_index` positions (padding) do not count."""
    tok = next_token_losses(logits, labels, ignore_index)
    valid = labels[:, 1:] != ignore_index
    return (tok * valid).sum(1), valid.sum(1)


class LossQuantile:
    """Ring buffer of recent finite per-sequence losses and the cutoff: its (1 - drop_fraction) quantile."""

    def __init__(self, config: LossTruncationConfig):
        self.config = config
        self.buffer = torch.full((config.buffer_size,), float("nan"))
        self.count = 0  # finite losses pushed so far
        self.since_refresh = 0
        self.cutoff = math.inf  # nothing is dropped until the first refresh after warm-up

    @property
    def truncating(self) -> bool:
        return math.isfinite(self.cutoff)

    def refresh(self) -> None:
        """Recompute the cutoff once warm-up is over and `recompute_every` new losses have arrived."""
        c = self.config
        if c.drop_fraction == 0 or self.count < c.min_count or self.since_refresh < c.recompute_every:
            return
        filled = self.buffer[: min(self.count, c.buffer_size)].double()
        self.cutoff = float(torch.quantile(filled, 1.0 - c.drop_fraction))  # linear, as np.percentile
        self.since_refresh = 0

    def keep(self, losses: torch.Tensor) -> torch.Tensor:
        """True for sequences that stay in the update: finite and below the cutoff (strict, as the reference)."""
        return torch.isfinite(losses) & (losses < self.cutoff)

    def push(self, losses: torch.Tensor) -> None:
        """Add the finite losses to the ring buffer (one vectorised write)."""
        losses = losses.detach().float().cpu()
        losses = losses[torch.isfinite(losses)]
        n, size = len(losses), self.config.buffer_size
        start = self.count + max(0, n - size)  # only the newest `size` values can survive the write
        losses = losses[-size:]
        self.buffer[(start + torch.arange(len(losses))) % size] = losses
        self.count += n
        self.since_refresh += n

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"buffer": self.buffer.clone(), "count": torch.tensor(self.count),
                "since_refresh": torch.tensor(self.since_refresh), "cutoff": torch.tensor(self.cutoff, dtype=torch.float64)}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        if tensors["buffer"].shape != self.buffer.shape:
            raise ValueError(f"saved loss buffer holds {len(tensors['buffer'])} values; this config's buffer_size is "
                             f"{self.config.buffer_size}")
        self.buffer = tensors["buffer"].clone()
        self.count, self.since_refresh = int(tensors["count"]), int(tensors["since_refresh"])
        self.cutoff = float(tensors["cutoff"])


class LossTruncationTrainer(CheckpointedStateMixin, Trainer):
    """`Trainer` that drops the highest-loss sequences of each training batch after a warm-up.

    Pass `method_config=LossTruncationConfig(...)`. Evaluation losses are never truncated. The training loss
    is the kept sequences' summed token loss over the step's token count (`num_items_in_batch`), the same scale as
    the model's own loss, so before warm-up ends it trains exactly as plain `Trainer`."""

    loss_is_scaled_for_ga = True  # divided by the whole step's token count below
    state_file = "loss_truncation_state.safetensors"

    def __init__(self, *args, method_config: LossTruncationConfig | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.method_config = method_config or LossTruncationConfig()
        self.quantile = LossQuantile(self.method_config)
        self._refreshed_at = -1  # the optimizer step whose cutoff is in use
        self._seen, self._kept = 0, 0  # sequences since the last log

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs, labels = forward_without_labels(self, model, inputs)
        token_sum, token_count = sequence_losses(outputs.logits, labels)
        per_sequence = token_sum.detach() / token_count  # NaN for a sequence without labels: dropped below

        if self.state.global_step != self._refreshed_at:  # once per optimizer step, not per micro-batch
            self.quantile.refresh()
            self._refreshed_at = self.state.global_step
        keep = self.quantile.keep(per_sequence)
        if not bool(torch.isfinite(per_sequence).all()):
            logger.warning_once("LossTruncationTrainer: non-finite per-sequence losses are dropped from the update "
                                "and kept out of the quantile buffer")
        self.quantile.push(self._gather(per_sequence))
        self._seen += len(keep)
        self._kept += int(keep.sum())

        loss = torch.where(keep, token_sum, torch.zeros_like(token_sum)).sum() / self._denominator(
            token_count, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def _denominator(self, token_count: torch.Tensor, num_items_in_batch):
        """The step's token count (Trainer counts it over all micro-batches and processes); without it, this
        micro-batch's count times the accumulation steps."""
        denom = step_token_count(self, token_count, num_items_in_batch)
        if self.method_config.normalize == "kept" and self.quantile.truncating:
            denom = denom * (1 - self.method_config.drop_fraction)
        return denom

    def _gather(self, losses: torch.Tensor) -> torch.Tensor:
        if self.accelerator.num_processes == 1:
            return losses
        padded = self.accelerator.pad_across_processes(losses, dim=0, pad_index=float("nan"))  # NaN: not pushed
        return self.accelerator.gather(padded)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._seen and "loss" in logs:
            logs["kept_fraction"] = self._kept / self._seen
            if self.quantile.truncating:
                logs["loss_cutoff"] = self.quantile.cutoff
            self._seen, self._kept = 0, 0
        super().log(logs, start_time)

    def regularizer_state(self) -> dict[str, torch.Tensor]:
        return {**self.quantile.state_dict(), "refreshed_at": torch.tensor(self._refreshed_at)}

    def load_regularizer_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.quantile.load_state_dict(tensors)
        self._refreshed_at = int(tensors["refreshed_at"])


register_regularizer("loss_truncation", LossTruncationConfig, LossTruncationTrainer)
