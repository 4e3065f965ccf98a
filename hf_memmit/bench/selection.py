"""Best-run selection (Sakarvadia et al. 2025, "Mitigating Memorization in Language Models", Appendices A.2.1,
A.3.2 and A.4.2): which run of a method's sweep represents it in the tables.

Percent differences against the unedited model of the same setting:
M = 100 (mem_after - mem_before) / mem_before, A likewise for accuracy, P for perplexity.

- math: argmin (M - A), i.e. most memorization removed for the least accuracy lost;
- language and real LMs: argmin (M + P + alpha), alpha = 100 iff M == 0 (a run that removed nothing loses to any
  that removed some, unless the latter's perplexity grows by more than 100%);
- inclusion: only runs whose unlearning seconds <= the setting's Extra fine-tuning seconds count; when none of
  a method's runs qualifies, all of its runs do (the paper's fallback);
- ties keep every tying run;
- regularizers (one training run per config and seed, scored on the seed mean): language min(perplexity + %
  memorized), math max(accuracy - % memorized), both in percent.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

TASKS = ("math", "language")


def percent_diff(after: float, before: float) -> float:
    """100 (after - before) / before; 0 when both are 0 (nothing to change), inf when only `before` is 0."""
    if before == 0:
        return 0.0 if after == 0 else math.copysign(math.inf, after)
    return 100.0 * (after - before) / before


def quality_key(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task={task!r}; allowed: {', '.join(TASKS)}")
    return "accuracy" if task == "math" else "perplexity"


def unlearning_score(row: dict, task: str) -> float:
    """The paper's score of one run (lower is better) from its `before` and `after` numbers."""
    key, b, a = quality_key(task), row["before"], row["after"]
    m = percent_diff(a["memorized"], b["memorized"])
    q = percent_diff(a[key], b[key])
    if key == "accuracy":
        return m - q
    return m + q + (100.0 if m == 0 else 0.0)


def eligible(rows: list[dict], budget_seconds: float | None) -> list[dict]:
    """The runs that count: those within the time budget, or all of them when none is."""
    if budget_seconds is None:
        return list(rows)
    within = [r for r in rows if r["seconds"] <= budget_seconds]
    return within or list(rows)


def best_runs(rows: Iterable[dict], task: str, budget_seconds: float | None = None) -> dict[str, list[dict]]:
    """Per method, the best of its successful runs on one setting (every run tying for best), by the paper's
    score and inclusion rule. Rows are sweep records: `method`, `seconds`, `before`, `after`."""
    by_method: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row.get("status", "ok") == "ok":
            by_method[row["method"]].append(row)
    out = {}
    for method, runs in by_method.items():
        runs = eligible(runs, budget_seconds)
        scores = [unlearning_score(r, task) for r in runs]
        best = min(scores)
        out[method] = [r for r, s in zip(runs, scores) if s == best]
    return out


def regularizer_score(mean_memorized_percent: float, mean_quality: float, task: str) -> float:
    """A regularizer config's score (lower is better) from its seed means: language perplexity + % memorized;
    math -(accuracy % - % memorized). The paper's math text says "highest (accuracy + percent memorized)",
    read as accuracy - memorized: rewarding memorization would contradict the selection's purpose."""
    if quality_key(task) == "accuracy":
        return -(mean_quality - mean_memorized_percent)
    return mean_quality + mean_memorized_percent


def best_regularizer_configs(rows: Iterable[dict], task: str) -> dict[str, list[dict]]:
    """Per regularizer, the config(s) with the best seed-mean score. Rows: `regularizer`, `config` (a dict),
    `memorized` (a fraction), `accuracy` (a fraction, math) or `perplexity` (language), one per seed."""
    key = quality_key(task)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["regularizer"], tuple(sorted(row["config"].items())))].append(row)
    scored: dict[str, list[tuple[float, dict]]] = defaultdict(list)
    for (name, config), seeds in groups.items():
        mem = 100.0 * sum(r["memorized"] for r in seeds) / len(seeds)
        quality = sum(r[key] for r in seeds) / len(seeds)
        quality = 100.0 * quality if key == "accuracy" else quality
        summary = {"regularizer": name, "config": dict(config), "seeds": len(seeds), "memorized_percent": mem,
                   key: quality}
        scored[name].append((regularizer_score(mem, quality, task), summary))
    return {name: [s for score, s in items if score == min(x for x, _ in items)] for name, items in scored.items()}
