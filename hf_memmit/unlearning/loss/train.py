"""The training loop every loss-based method runs: AdamW on the adapter's LoRA weights over a stream of
batches, with the optional stop-when-clean check."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import torch
from tqdm.auto import tqdm

from ..data import cycle_indices, epochs_of, index_batches, n_batches, row_losses


def forget_steps(config, forget, generator: torch.Generator) -> tuple[Iterator[torch.Tensor], int]:
    """Shuffled forget-row batches for the schedule of `config` (epochs over the forget set, or max_steps)."""
    epochs, n_steps = epochs_of(config, n_batches(len(forget), config.batch_size))
    steps = (i for _ in epochs for i in index_batches(len(forget), config.batch_size, generator))
    return steps, n_steps


def retain_term(model, retain, config, generator: torch.Generator) -> Callable[[], torch.Tensor]:
    """Mean CE of the next batch of retain rows (cycled, reshuffled every pass)."""
    batches = cycle_indices(len(retain), config.batch_size, generator)
    return lambda: row_losses(model, *retain.batch(next(batches))).mean()


def train_adapter(model, config, steps: Iterator, n_steps: int, loss_of: Callable[[object], torch.Tensor],
                  progress: bool, stop: Callable[[int], bool] | None = None) -> None:
    """AdamW on the trainable (LoRA) parameters, one step per item of `steps` (at most `n_steps`, capped by
    `config.max_steps`); `stop(step)` every `config.forget_check_every` steps ends fitting when it says so."""
    if config.max_steps is not None:
        n_steps = min(n_steps, config.max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    every = config.forget_check_every
    bar = tqdm(itertools.islice(steps, n_steps), total=n_steps, desc=config.method, disable=not progress)
    for done, step in enumerate(bar, 1):
        optimizer.zero_grad()
        loss_of(step).backward()
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        if stop is not None and every and done % every == 0:
            clean = stop(done)
            bar.set_postfix(extractable=stop.last_seen())
            if clean:
                break
    optimizer.zero_grad(set_to_none=True)
