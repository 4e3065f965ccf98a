"""(k, l) exact-match memorization (paper Def 2.1): the one function every caller uses.

Greedy decoding from a prompt reproduces a target exactly iff, in one teacher-forced forward pass over
prompt + target, the argmax at every target position equals the target token (hf_apis.md §2.6). So the
check needs a single batched forward pass instead of a token-by-token `generate` loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm


@dataclass
class GreedyMatch:
    """Per row: `exact[i]` is True iff greedy decoding reproduces target i; `token_match[i]` is the fraction
    of target positions whose teacher-forced argmax equals the target token."""

    exact: torch.Tensor
    token_match: torch.Tensor


def _as_lists(rows) -> list[list[int]]:
    if isinstance(rows, torch.Tensor):
        return rows.tolist()
    return [list(map(int, r)) for r in rows]


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def check_vocab(model, rows: Sequence[Sequence[int]]) -> None:
    """Token ids must index the model's embedding: catches a tokenizer/model mismatch before it crashes."""
    vocab = model.get_input_embeddings().num_embeddings
    top = max((max(r) for r in rows if len(r)), default=-1)
    low = min((min(r) for r in rows if len(r)), default=0)
    if top >= vocab or low < 0:
        bad = top if top >= vocab else low
        raise ValueError(f"token id {bad} is outside the model's vocabulary [0, {vocab}): the sequences were "
                         "tokenized with a different tokenizer than this model's")


@torch.no_grad()
def greedy_match(model, prompts, targets, *, batch_size: int = 64, pad_token_id: int = 0,
                 progress: bool = False) -> GreedyMatch:
    """Does greedy decoding from each prompt reproduce its target exactly? Teacher-forced, batched.

    Prompts and targets may have different lengths per row (lists of token ids or LongTensors; no padding
    inside them). Rows are left-padded inside each batch with explicit position ids, so every target ends
    at the last position and only `max(len(target))` logits per row are computed: memory is bounded by
    `batch_size` whatever the number of rows. EOS is an ordinary token here: a target may contain it.
    The model runs in its own dtype; for exact agreement with an fp32 `generate`, pass an fp32 model
    (bf16 flipped 3 of 605 rows on a paper-scale model).
    """
    prompts, targets = _as_lists(prompts), _as_lists(targets)
    if len(prompts) != len(targets):
        raise ValueError(f"got {len(prompts)} prompts but {len(targets)} targets; they must pair up")
    if not prompts:
        raise ValueError("no rows to measure: prompts and targets are empty")
    if any(len(p) == 0 for p in prompts) or any(len(t) == 0 for t in targets):
        raise ValueError("every prompt and every target needs at least one token")
    check_vocab(model, prompts + targets)
    was_training = model.training
    model.eval()
    device = _model_device(model)
    exact, frac = [], []
    starts = range(0, len(prompts), batch_size)
    for s in tqdm(starts, desc="memorization", disable=not progress, leave=False):
        seqs = [p + t[:-1] for p, t in zip(prompts[s:s + batch_size], targets[s:s + batch_size])]
        tgts = targets[s:s + batch_size]
        width, keep = max(map(len, seqs)), max(map(len, tgts))
        ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        want = torch.full((len(seqs), keep), -1, dtype=torch.long)
        for i, (seq, tgt) in enumerate(zip(seqs, tgts)):
            ids[i, width - len(seq):] = torch.tensor(seq)
            mask[i, width - len(seq):] = 1
            want[i, keep - len(tgt):] = torch.tensor(tgt)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                       position_ids=position_ids.to(device), logits_to_keep=keep).logits
        pred = logits.argmax(-1).cpu()
        valid = want >= 0
        hit = (pred == want) & valid
        exact.append(((hit | ~valid).all(-1)))
        frac.append(hit.sum(-1).float() / valid.sum(-1).float())
    model.train(was_training)
    return GreedyMatch(exact=torch.cat(exact), token_match=torch.cat(frac))


@dataclass
class MemorizationResult:
    """(k, l) memorization of a set of rows.

    `fraction` = memorized / total over the qualifying rows (NaN, shown as null in JSON, when no row
    qualifies: a documented 0/0). `flags[i]` and `qualifying[i]` are per input row; `memorized_indices`
    are the row indices to use as the forget set; `clean_fraction` is the share of qualifying rows whose
    greedy continuation is the clean twin's instead; `per_class` splits the counts by duplication class.
    """

    fraction: float
    memorized: int
    total: int
    clean_fraction: float
    flags: list[bool]
    qualifying: list[bool]
    token_match: list[float]
    memorized_indices: list[int]
    per_class: dict[int, dict]

    def to_dict(self, rows: bool = False) -> dict:
        nan_to_none = lambda x: None if x != x else x  # noqa: E731
        out = {"fraction": nan_to_none(self.fraction), "memorized": self.memorized, "total": self.total,
               "clean_fraction": nan_to_none(self.clean_fraction),
               "per_class": {str(k): {**v, "fraction": nan_to_none(v["fraction"])} for k, v in self.per_class.items()}}
        if rows:
            out.update(flags=self.flags, qualifying=self.qualifying, memorized_indices=self.memorized_indices)
        return out


def artifact_pairs(row: dict, target_length: int, prompt_length: int | None = None):
    """(prompt, memorized target, clean target, qualifies) for one TinyMem row, by its `artifact`:

    - noise: prompt = the clean prefix; memorized iff the noised continuation is produced; qualifies only
      if the noised and clean continuations differ (as the paper counts);
    - backdoor: prompt = the sequence up to and including the trigger; target = the fill tokens;
    - none (a user's own sequence): prompt = the first k tokens, target = the next l.
    """
    k = row["prompt_length"] if prompt_length is None else prompt_length
    ids, clean = list(row["input_ids"]), list(row.get("clean_input_ids") or row["input_ids"])
    if k + target_length > len(ids):
        raise ValueError(f"row {row.get('id', '?')} has {len(ids)} tokens, too few for k={k} + l={target_length}")
    target, clean_target = ids[k:k + target_length], clean[k:k + target_length]
    artifact = row.get("artifact", "none")
    prompt = clean[:k] if artifact == "noise" else ids[:k]
    qualifies = target != clean_target if artifact == "noise" else True
    return prompt, target, clean_target, qualifies


def measure_memorization(model, rows, *, target_length: int = 50, prompt_length: int | None = None,
                         batch_size: int = 64, progress: bool = False) -> MemorizationResult:
    """Memorization of TinyMem-style rows (a `datasets.Dataset` or list of dicts with the TinyMem columns;
    a user's own rows need only `input_ids`, then k = `prompt_length` (default 50) and l = `target_length`)."""
    rows = [dict(r) for r in rows]
    if not rows:
        raise ValueError("no rows to measure: the set is empty")
    if prompt_length is None and "prompt_length" not in rows[0]:
        prompt_length = 50
    pairs = [artifact_pairs(r, target_length, prompt_length) for r in rows]
    qualifying = [q for *_, q in pairs]
    idx = [i for i, q in enumerate(qualifying) if q]
    flags, clean_flags, token_match = [False] * len(rows), [False] * len(rows), [0.0] * len(rows)
    if idx:
        prompts = [pairs[i][0] for i in idx]
        mem = greedy_match(model, prompts, [pairs[i][1] for i in idx], batch_size=batch_size, progress=progress)
        cln = greedy_match(model, prompts, [pairs[i][2] for i in idx], batch_size=batch_size)
        for j, i in enumerate(idx):
            flags[i], clean_flags[i] = bool(mem.exact[j]), bool(cln.exact[j])
            token_match[i] = float(mem.token_match[j])
    per_class: dict[int, dict] = {}
    for i in idx:
        c = per_class.setdefault(int(rows[i].get("dup_class", 0)), {"memorized": 0, "total": 0})
        c["memorized"] += flags[i]
        c["total"] += 1
    for c in per_class.values():
        c["fraction"] = c["memorized"] / c["total"]
    n, m = len(idx), sum(flags)
    return MemorizationResult(
        fraction=m / n if n else float("nan"), memorized=m, total=n,
        clean_fraction=sum(clean_flags) / n if n else float("nan"), flags=flags, qualifying=qualifying,
        token_match=token_match, memorized_indices=[i for i, f in enumerate(flags) if f],
        per_class=dict(sorted(per_class.items())),
    )
