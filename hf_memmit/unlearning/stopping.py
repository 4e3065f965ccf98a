"""Stop fitting once the forget rows are no longer extractable.

A fixed number of epochs is sized for one forget set: 5 epochs of batch 64 are 5 optimizer steps on 10 rows
and hundreds on 10,000. So the trained-mask methods can instead run up to `max_steps` optimizer steps and,
every `forget_check_every` steps, run the (k, l) check on the forget rows under the current mask; they stop at the
first check that finds none extractable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..metrics import greedy_match


@dataclass
class ForgetCheck:
    """The check run during fitting: row i is extractable iff greedy decoding from its first `prompt_lengths[i]`
    tokens reproduces the rest of the row. `history` holds (step, extractable rows); `stopped_at` the step at
    which none was left (None: never reached)."""

    model: torch.nn.Module
    input_ids: torch.Tensor
    prompt_lengths: list[int]
    batch_size: int = 32
    history: list[tuple[int, int]] = field(default_factory=list)
    stopped_at: int | None = None

    def extractable(self) -> int:
        rows = self.input_ids.tolist()
        prompts = [r[:k] for r, k in zip(rows, self.prompt_lengths)]
        targets = [r[k:] for r, k in zip(rows, self.prompt_lengths)]
        return int(greedy_match(self.model, prompts, targets, batch_size=self.batch_size).exact.sum())

    def __call__(self, step: int) -> bool:
        """True when fitting should stop after `step` optimizer steps."""
        left = self.extractable()
        self.history.append((step, left))
        if left == 0:
            self.stopped_at = step
        return left == 0

    def report(self) -> dict:
        last = self.history[-1] if self.history else (0, None)
        return {"rows": len(self.prompt_lengths), "checks": self.history, "stopped_at": self.stopped_at,
                "extractable_at_end": last[1]}


def prompt_lengths_of(forget, n_rows: int) -> list[int]:
    """Per-row prompt length k from a Dataset's `prompt_length` column (what the scan and TinyMem data carry)."""
    columns = getattr(forget, "column_names", None) or []
    if "prompt_length" not in columns:
        raise ValueError("forget_check_every needs each forget row's prompt length k; allowed: a datasets.Dataset "
                         "with a 'prompt_length' column (the scan's forget set and TinyMem splits have one)")
    lengths = [int(k) for k in forget["prompt_length"]]
    if len(lengths) != n_rows:
        raise ValueError(f"prompt_length has {len(lengths)} values for {n_rows} forget rows")
    return lengths
