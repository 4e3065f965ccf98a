"""(k, l) memorization of TinyMem-style rows (paper Def 2.1), with the artifact-aware views.

Every view reduces a row to (prompt, target) pairs and asks `greedy.greedy_match` (or, for cross-checking,
`greedy.greedy_match_generate`) whether greedy decoding reproduces the target: one check under every caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..utils import check_choice
from .greedy import GreedyMatch, check_vocab, greedy_match, greedy_match_generate

CHECK_METHODS = ("teacher_forced", "generate")  # how the (k, l) check runs (unlike unlearning.METHODS)
DEFAULT_PROMPT_LENGTH = 50


@dataclass
class MemorizationResult:
    """(k, l) memorization of a set of rows.

    `fraction` = memorized / total over the qualifying rows (NaN, shown as null in JSON, when no row
    qualifies: a documented 0/0). `flags[i]` and `qualifying[i]` are per input row; `memorized_indices`
    are the row indices to use as the forget set; `clean_fraction` is the share of qualifying rows whose
    greedy continuation is the clean twin's instead (`clean_flags` per row); `per_class` splits the counts
    by duplication class; `token_match[i]` is the fraction of target tokens predicted right (0.0 for rows
    that do not qualify).
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
    clean_flags: list[bool] = field(default_factory=list)
    method: str = "teacher_forced"

    def to_dict(self, rows: bool = False) -> dict:
        def nan_to_none(x):
            return None if isinstance(x, float) and math.isnan(x) else x

        out = {"fraction": nan_to_none(self.fraction), "memorized": self.memorized, "total": self.total,
               "clean_fraction": nan_to_none(self.clean_fraction), "method": self.method,
               "per_class": {str(k): {**v, "fraction": nan_to_none(v["fraction"])} for k, v in self.per_class.items()}}
        if rows:
            out.update(flags=self.flags, qualifying=self.qualifying, memorized_indices=self.memorized_indices,
                       clean_flags=self.clean_flags, token_match=self.token_match)
        return out


def artifact_pairs(row: dict, target_length: int, prompt_length: int | None = None):
    """(prompt, memorized target, clean target, qualifies) for one TinyMem row, by its `artifact`:

    - noise: prompt = the clean prefix; memorized iff the noised continuation is produced; qualifies only
      if the noised and clean continuations differ (as the paper counts);
    - backdoor: prompt = the sequence up to and including the trigger; target = the fill tokens;
    - none (a user's own sequence): prompt = the first k tokens, target = the next l.
    k is the row's `prompt_length` unless `prompt_length` is given.
    """
    k = row.get("prompt_length", DEFAULT_PROMPT_LENGTH) if prompt_length is None else prompt_length
    ids = list(row["input_ids"])
    clean = list(row.get("clean_input_ids") or ids)
    if k < 1 or target_length < 1:
        raise ValueError(f"prompt_length={k} and target_length={target_length} must both be >= 1")
    if k + target_length > len(ids):
        raise ValueError(f"row {row.get('id', '?')} has {len(ids)} tokens, too few for k={k} + l={target_length}")
    target, clean_target = ids[k:k + target_length], clean[k:k + target_length]
    artifact = row.get("artifact", "none")
    check_choice("artifact", artifact, ("none", "noise", "backdoor"))
    prompt = clean[:k] if artifact == "noise" else ids[:k]
    qualifies = target != clean_target if artifact == "noise" else True
    return prompt, target, clean_target, qualifies


def _check(model, prompts, targets, method, batch_size, progress, **kwargs) -> GreedyMatch:
    if method == "generate":
        return greedy_match_generate(model, prompts, targets, batch_size=batch_size, progress=progress, **kwargs)
    return greedy_match(model, prompts, targets, batch_size=batch_size, progress=progress, **kwargs)


def measure_memorization(model, rows, *, target_length: int = 50, prompt_length: int | None = None,
                         batch_size: int = 64, progress: bool = False, method: str = "teacher_forced",
                         fp32: bool = True, pad_token_id: int = 0) -> MemorizationResult:
    """Memorization of TinyMem-style rows (a `datasets.Dataset` or list of dicts with the TinyMem columns;
    a user's own rows need only `input_ids`, then k = `prompt_length` (default 50) and l = `target_length`).

    `method="generate"` runs the `generate` loop instead of the teacher-forced pass (same flags, slower);
    `fp32` and `pad_token_id` as in `greedy_match`. Raises ValueError on an empty set of rows.
    """
    check_choice("method", method, CHECK_METHODS)
    rows = [dict(r) for r in rows]
    if not rows:
        raise ValueError("no rows to measure: the set is empty")
    pairs = [artifact_pairs(r, target_length, prompt_length) for r in rows]
    check_vocab(model, [p for pair in pairs for p in pair[:3]])
    qualifying = [q for *_, q in pairs]
    idx = [i for i, q in enumerate(qualifying) if q]
    flags, clean_flags, token_match = [False] * len(rows), [False] * len(rows), [0.0] * len(rows)
    opts = {"fp32": fp32, "pad_token_id": pad_token_id}
    if idx:
        mem = _check(model, [pairs[i][0] for i in idx], [pairs[i][1] for i in idx], method, batch_size, progress,
                     **opts)
        for j, i in enumerate(idx):
            flags[i], token_match[i] = bool(mem.exact[j]), float(mem.token_match[j])
        # where the continuations differ, a memorized row cannot also continue cleanly: check the rest only
        rest = [i for i in idx if not flags[i] and pairs[i][2] != pairs[i][1]]
        for i in idx:
            clean_flags[i] = flags[i] and pairs[i][2] == pairs[i][1]
        if rest:
            cln = _check(model, [pairs[i][0] for i in rest], [pairs[i][2] for i in rest], method, batch_size,
                         False, **opts)
            for j, i in enumerate(rest):
                clean_flags[i] = bool(cln.exact[j])
    per_class: dict[int, dict] = {}
    for i in idx:
        c = per_class.setdefault(int(rows[i].get("dup_class", 0)), {"memorized": 0, "total": 0})
        c["memorized"] += flags[i]
        c["total"] += 1
    for c in per_class.values():
        c["fraction"] = c["memorized"] / c["total"]
    n, m = len(idx), sum(flags)
    return MemorizationResult(
        fraction=m / n if n else math.nan, memorized=m, total=n,
        clean_fraction=sum(clean_flags) / n if n else math.nan, flags=flags, qualifying=qualifying,
        token_match=token_match, memorized_indices=[i for i, f in enumerate(flags) if f],
        per_class=dict(sorted(per_class.items())), clean_flags=clean_flags, method=method,
    )


__all__ = ["CHECK_METHODS", "DEFAULT_PROMPT_LENGTH", "GreedyMatch", "MemorizationResult", "artifact_pairs",
           "greedy_match", "greedy_match_generate", "measure_memorization"]
