"""Goldfish loss (Hans, Wen, Jain, Kirchenbauer, Kazemi, Singhania, Singh, Somepalli, Geiping, Bhatele and
Goldstein, NeurIPS 2024, "Be like a goldfish, don't memorize!", Section 3) as a `Trainer` subclass.

The loss leaves out a pseudo-random 1/k of the tokens. Which ones depends only on the h tokens before each token
(their hash), so a passage seen many times loses the same tokens every time, wherever it sits in a row or a batch,
and the model never trains on the whole passage: it cannot reproduce it verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Trainer

from ..metrics.cross_entropy import IGNORE_INDEX, next_token_losses
from ..utils import check_int
from .registry import register_regularizer
from .state import forward_without_labels, step_token_count
from .tied_dropout.keys import context_hashes


@dataclass
class GoldfishConfig:
    """Args:
        k: one token in k (in expectation) is left out of the loss; k >= 2 (the paper's runs use 3 ... 128; k = 4
            in its strongest setting).
        h: tokens of context hashed to decide whether the next token is left out; h >= 1 (the paper's default
            13). The first h tokens of a row have less context and are never left out.
        hash_seed: salts the hash: another seed leaves out other tokens.
    """

    k: int = 4
    h: int = 13
    hash_seed: int = 0

    def __post_init__(self):
        check_int("k", self.k, 2)
        check_int("h", self.h, 1)
        check_int("hash_seed", self.hash_seed, 0)


def goldfish_dropped(input_ids: torch.Tensor, config: GoldfishConfig) -> torch.Tensor:
    """Bool [B, T - 1]: True where the prediction at position t (of token t + 1) is left out of the loss, i.e.
    where the hash of tokens t + 1 - h .. t is 0 modulo k."""
    b, t = input_ids.shape
    dropped = torch.zeros(b, max(t - 1, 0), dtype=torch.bool)
    hashes = context_hashes(input_ids, config.h, config.hash_seed)  # column s: tokens s .. s + h - 1
    if hashes.shape[1]:
        dropped[:, config.h - 1:] = hashes % config.k == 0
    return dropped.to(input_ids.device)


class GoldfishLossTrainer(Trainer):
    """`Trainer` with the Goldfish loss: pass `method_config=GoldfishConfig(k=4, h=13)`.

    The training loss is the kept tokens' summed cross-entropy over the step's count of label tokens (Trainer's
    `num_items_in_batch`), so gradient accumulation equals a larger batch exactly; against a mean over the kept
    tokens alone this is about (k - 1) / k of the scale, which only matters through gradient clipping.
    Evaluation losses keep every token."""

    loss_is_scaled_for_ga = True  # divided by the whole step's token count below

    def __init__(self, *args, method_config: GoldfishConfig | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.method_config = method_config or GoldfishConfig()
        self._seen, self._kept = 0, 0  # label tokens since the last log

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs, labels = forward_without_labels(self, model, inputs)
        tokens = next_token_losses(outputs.logits, labels)
        valid = labels[:, 1:] != IGNORE_INDEX
        ids = inputs["input_ids"] if "input_ids" in inputs else labels.masked_fill(labels == IGNORE_INDEX, 0)
        kept = valid & ~goldfish_dropped(ids, self.method_config)
        self._seen += int(valid.sum())
        self._kept += int(kept.sum())
        loss = (tokens * kept).sum() / step_token_count(self, valid.sum(), num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._seen and "loss" in logs:
            logs["kept_token_fraction"] = self._kept / self._seen
            self._seen, self._kept = 0, 0
        super().log(logs, start_time)


register_regularizer("goldfish", GoldfishConfig, GoldfishLossTrainer)
