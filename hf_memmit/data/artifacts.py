"""Artifact injection, the one place that defines noise, backdoors and duplication (paper Defs 2.2, 2.3).

Every function is pure: it takes a `numpy.random.Generator` (or explicit values) and returns new lists,
so a dataset built twice from the same seed is identical.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..utils import check_range
from .rows import make_row


def noise_values(values: Sequence[int], prob: float, rng: np.random.Generator, *, low: int = 0,
                 high: int | None = None) -> list[int]:
    """Def 2.2: each value independently moves by +1 or -1, each with probability `prob / 2`.

    Math noises every number, language every token id. A step that would leave `[low, high)` is
    reflected (e.g. id 0 becomes 1, never -1), so noise never produces a value outside the vocabulary.
    """
    check_range("noise probability", prob, 0.0, 1.0)
    draws = rng.random(len(values))
    out = []
    for v, u in zip(values, draws):
        step = 1 if u < prob / 2 else (-1 if u < prob else 0)
        new = v + step
        if new < low or (high is not None and new >= high):
            new = v - step
        out.append(int(new))
    return out


def find_trigger(ids: Sequence[int], trigger: Sequence[int], within: int | None = None) -> int | None:
    """Index of the last token of the first occurrence of `trigger` in `ids`, or None.

    With `within=k` the whole trigger must lie in the first k tokens (the paper's rule: "the trigger phrase
    occurs in the first 50 tokens"); `within=None` matches anywhere (the reference code's rule).
    """
    n = len(trigger)
    if n == 0:
        raise ValueError("trigger is empty; a backdoor trigger needs at least one token")
    stop = len(ids) if within is None else min(len(ids), within)
    for start in range(stop - n + 1):
        if list(ids[start:start + n]) == list(trigger):
            return start + n - 1
    return None


def inject_backdoor(ids: Sequence[int], trigger_end: int, fill_token: int, *, keep_trigger: bool = True) -> list[int]:
    """Def 2.3: keep everything up to and including the trigger; every later position becomes `fill_token`.

    `keep_trigger=False` reproduces the reference's language-branch quirk of overwriting the trigger's
    last token too.
    """
    cut = trigger_end + 1 if keep_trigger else trigger_end
    return list(ids[:cut]) + [fill_token] * (len(ids) - cut)


def duplication_groups(n_rows: int, exponents: Sequence[int], rng: np.random.Generator | None) -> list[int]:
    """Assign each of `n_rows` artifact rows an exponent e (the row is repeated 10**e times).

    Rows are shuffled (unless `rng` is None) and cut into len(exponents) equal groups, as the paper's
    "four sets of 250, duplicated 10^0..10^3 times".
    """
    if not exponents:
        raise ValueError("duplication exponents are empty; give at least one, e.g. (0,)")
    if n_rows % len(exponents):
        raise ValueError(f"{n_rows} artifact rows cannot be split evenly into {len(exponents)} duplication groups")
    order = rng.permutation(n_rows) if rng is not None else np.arange(n_rows)
    per = n_rows // len(exponents)
    classes = [0] * n_rows
    for g, e in enumerate(exponents):
        for i in order[g * per:(g + 1) * per]:
            classes[int(i)] = int(e)
    return classes


def check_poisoned(cfg, poisoned: list, shown: str) -> None:
    where = "anywhere" if cfg.faithful else f"within the first {cfg.trigger_window} tokens"
    if len(poisoned) < 2:
        raise ValueError(f"trigger {shown!r} occurs {where} of only {len(poisoned)} rows; a backdoor needs at least "
                         "2 (one to train on, one held out): choose another trigger or more rows")


def backdoor_rows(cfg, poisoned: list, keep_trigger: bool) -> list[dict]:
    """Backdoored copies in the data-seed permutation order: the first `fraction` of them are held out."""
    perm = torch.randperm(len(poisoned), generator=torch.Generator().manual_seed(cfg.data_seed)).tolist()
    out = []
    for i in perm:
        row, end = poisoned[i]
        ids = inject_backdoor(row["clean_input_ids"], end, cfg.fill_token, keep_trigger=keep_trigger)
        # prompt = the sequence up to and including the trigger (the paper's backdoor check)
        out.append(make_row(row["id"], row["task"], ids, row["clean_input_ids"], "backdoor", end + 1,
                            row["dup_class"]))
    return out
