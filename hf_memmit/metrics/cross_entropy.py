"""The next-token cross-entropy of every position, the one piece the per-row, per-sequence and per-document
losses of the library share (each then reduces it its own way)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # transformers' label for "no target here"


def next_token_losses(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Cross-entropy [B, T-1] in fp32 of position t's logits [B, T, V] against token t+1 of `targets` [B, T]
    (unshifted, as Hugging Face causal LMs take labels); `ignore_index` targets give 0."""
    return F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets[:, 1:], ignore_index=ignore_index,
                           reduction="none")
