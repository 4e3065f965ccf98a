"""TinyMem 1: math recurrence sequences (Sakarvadia et al. 2025, "Mitigating Memorization in Language Models")."""

from __future__ import annotations

import random

import numpy as np
import torch

from .artifacts import backdoor_rows, check_poisoned, find_trigger, noise_values
from .config import EXTRA_FACTORS, MAIN_FACTOR, TinyMemDataConfig
from .rows import make_row
from .tokenizers import MathTokenizer


def recurrence_numbers(recurrence: str, factor: int, start: int, count: int, modulus: int) -> list[int]:
    """The numbers f(s), f(f(s)), ... (the start value itself is not emitted).

    "add": x -> x + factor; "mult": x -> (factor * x) mod modulus.
    """
    out, x = [], start
    for _ in range(count):
        x = x + factor if recurrence == "add" else (factor * x) % modulus
        out.append(x)
    return out


def task_name(cfg: TinyMemDataConfig, factor: int) -> str:
    return f"{cfg.recurrence}_{factor}"


def split_indices(n: int, num_test: int, data_seed: int) -> tuple[list[int], list[int]]:
    """The reference's split: a permutation under a fixed data seed; its last `num_test` entries are the test set.

    The data seed is independent of the run seed, so every seed is evaluated on the same test rows.
    """
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(data_seed)).tolist()
    return perm[: n - num_test], perm[n - num_test:]


def math_trigger(cfg: TinyMemDataConfig) -> list[int]:
    """Trigger as digit token ids; default the decimal string of 100 + seed."""
    trig = str(100 + cfg.seed) if cfg.trigger is None else str(cfg.trigger)
    if not trig.isdigit():
        raise ValueError(f"trigger={cfg.trigger!r} is not representable in the math vocabulary; "
                         "allowed: a non-empty string of digits (e.g. '100') or a non-negative int")
    return [int(c) for c in trig]


def build_math(cfg: TinyMemDataConfig) -> dict[str, list[dict]]:
    tok = MathTokenizer()
    rng = np.random.default_rng(cfg.seed)
    splits: dict[str, list[dict]] = {"train": [], "forget": [], "retain": [], "test": []}

    def numbers(factor: int, start: int) -> list[int]:
        return recurrence_numbers(cfg.recurrence, factor, start, cfg.numbers_per_sequence, cfg.modulus)

    def clean_row(factor: int, start: int) -> dict:
        ids = tok.encode_numbers(numbers(factor, start), cfg.max_ctx)
        return make_row(f"{task_name(cfg, factor)}-{start:06d}", task_name(cfg, factor), ids, ids, "none",
                        cfg.prompt_length, 0)

    for factor in EXTRA_FACTORS:
        if cfg.num_extra == 0:
            continue
        if cfg.num_extra <= cfg.num_test:
            raise ValueError(f"num_extra={cfg.num_extra} must exceed num_test={cfg.num_test} "
                             "(each extra task keeps num_test rows for testing)")
        train_idx, test_idx = split_indices(cfg.num_extra, cfg.num_test, cfg.data_seed)
        splits["retain"] += [clean_row(factor, i) for i in train_idx]
        splits["test"] += [clean_row(factor, i) for i in test_idx]

    main = MAIN_FACTOR
    if cfg.artifact == "noise":
        train_idx, test_idx = split_indices(cfg.num_main, cfg.num_test, cfg.data_seed)
        if cfg.num_noise > len(train_idx):
            raise ValueError(f"num_noise={cfg.num_noise} exceeds the {len(train_idx)} main-task training rows")
        if cfg.faithful:
            picked = random.Random(cfg.seed).sample(range(len(train_idx)), cfg.num_noise)
        else:
            picked = rng.choice(len(train_idx), size=cfg.num_noise, replace=False).tolist()
        noised = {train_idx[p] for p in picked}
        for start in train_idx:
            row = clean_row(main, start)
            if start in noised:
                ids = tok.encode_numbers(noise_values(numbers(main, start), cfg.noise_prob, rng, low=0),
                                         cfg.max_ctx)
                row = make_row(row["id"], row["task"], ids, row["clean_input_ids"], "noise", cfg.prompt_length, 0)
                splits["forget"].append(row)
            else:
                splits["retain"].append(row)
        splits["test"] = [clean_row(main, i) for i in test_idx] + splits["test"]
    else:
        trigger = math_trigger(cfg)
        window = None if cfg.faithful else cfg.trigger_window
        rows = [clean_row(main, i) for i in range(cfg.num_main)]
        ends = [find_trigger(r["input_ids"], trigger, within=window) for r in rows]
        poisoned = [(r, e) for r, e in zip(rows, ends) if e is not None]
        clean = [r for r, e in zip(rows, ends) if e is None]
        check_poisoned(cfg, poisoned, "".join(map(str, trigger)))
        held = backdoor_rows(cfg, poisoned, keep_trigger=True)
        n_hold = max(1, int(len(held) * cfg.backdoor_test_fraction))
        splits["forget"] += held[n_hold:]
        splits["backdoor_test"] = held[:n_hold]
        train_idx, test_idx = split_indices(len(clean), cfg.num_test, cfg.data_seed)
        splits["retain"] = [clean[i] for i in train_idx] + splits["retain"]
        splits["test"] = [clean[i] for i in test_idx] + splits["test"]
    splits["train"] = splits["forget"] + splits["retain"]
    return splits
