"""Stop fitting once the forget rows are no longer extractable.

A fixed number of epochs is sized for one forget set: 5 epochs of batch 64 are 5 optimizer steps on 10 rows
and hundreds on 10,000. So the trained-mask methods can instead run up to `max_steps` optimizer steps and,
every `forget_check_every` steps, run the (k, l) check on the forget rows under the current mask; they stop at the
first check that finds none extractable.

Checking often matters: on a real LM the mask that first removes the forget rows costs little perplexity, and
a few more steps of gradient ascent can cost a lot (SmolLM2-135M: +0% at the first clean check, +96% when
checked only every 10 steps). On a large forget set a check is expensive, so with `sample_rows` a check first
looks at a random sample of that many rows and checks them all only when the sample has none extractable.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..metrics import greedy_match
from .parallel import ONE_PROCESS, Split


@dataclass
class ForgetCheck:
    """The check run during fitting: row i is extractable iff greedy decoding from its first `prompt_lengths[i]`
    tokens reproduces the rest of the row. `history` holds (step, extractable rows) of the checks over all rows;
    `sampled` holds (step, extractable rows in the sample, sample size) of the sample checks that found some;
    `stopped_at` the step at which none was left (None: never reached). With `split` over several processes,
    each checks its slice of the rows and the counts are summed, so every process takes the same decision.
    `fp32`: the check's precision (`greedy_match`)."""

    model: torch.nn.Module
    input_ids: torch.Tensor
    prompt_lengths: list[int]
    batch_size: int = 32
    sample_rows: int | None = None
    seed: int = 0
    split: Split = ONE_PROCESS
    fp32: bool | str = True
    history: list[tuple[int, int]] = field(default_factory=list)
    sampled: list[tuple[int, int, int]] = field(default_factory=list)
    stopped_at: int | None = None

    def __post_init__(self):
        self._generator = torch.Generator().manual_seed(self.seed)

    def extractable(self, rows: list[int] | None = None) -> int:
        """How many of `rows` (default: all) are extractable under the current mask."""
        rows = self.split.part(torch.arange(len(self.prompt_lengths)) if rows is None else torch.tensor(rows))
        ids = self.input_ids[rows].tolist()
        lengths = [self.prompt_lengths[i] for i in rows.tolist()]
        prompts = [r[:k] for r, k in zip(ids, lengths)]
        targets = [r[k:] for r, k in zip(ids, lengths)]
        found = (int(greedy_match(self.model, prompts, targets, batch_size=self.batch_size, fp32=self.fp32).exact.sum())
                 if ids else 0)
        return self.split.total(found)

    def __call__(self, step: int) -> bool:
        """True when fitting should stop after `step` optimizer steps."""
        n = len(self.prompt_lengths)
        if self.sample_rows is not None and self.sample_rows < n:
            sample = torch.randperm(n, generator=self._generator)[:self.sample_rows].tolist()
            hits = self.extractable(sample)
            if hits:
                self.sampled.append((step, hits, len(sample)))
                return False
        left = self.extractable()
        self.history.append((step, left))
        if left == 0:
            self.stopped_at = step
        return left == 0

    def last_seen(self) -> str:
        """What the latest check found: "3 of 64" (all rows), "2 of a sample of 64", or "unknown" (no check)."""
        full = self.history[-1] if self.history else None
        sample = self.sampled[-1] if self.sampled else None
        if sample is not None and (full is None or sample[0] > full[0]):
            return f"{sample[1]} of a sample of {sample[2]}"
        return "unknown" if full is None else f"{full[1]} of {len(self.prompt_lengths)}"

    def report(self) -> dict:
        last = self.history[-1] if self.history else (0, None)
        return {"rows": len(self.prompt_lengths), "checks": self.history, "sampled_checks": self.sampled,
                "sample_rows": self.sample_rows, "stopped_at": self.stopped_at, "extractable_at_end": last[1]}


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


def run_steps(steps: Iterator, n_steps: int, config, step: Callable[[object], None], progress: bool,
              stop: ForgetCheck | None = None) -> None:
    """The fitting loop of the trained methods: `step(item)` (one optimizer step) for each item of `steps`, at
    most `n_steps` and `config.max_steps`, under a progress bar. With `stop` and `config.forget_check_every`,
    `stop(done)` runs after every that-many steps (the bar shows what it found) and the first True ends the loop."""
    if config.max_steps is not None:
        n_steps = min(n_steps, config.max_steps)
    every = config.forget_check_every
    bar = tqdm(itertools.islice(steps, n_steps), total=n_steps, desc=config.method, disable=not progress)
    for done, item in enumerate(bar, 1):
        step(item)
        if stop is not None and every and done % every == 0:
            clean = stop(done)
            bar.set_postfix(extractable=stop.last_seen())
            if clean:
                break

