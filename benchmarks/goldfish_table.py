"""Goldfish loss (Hans et al. 2024) against plain training on the quick 4-layer language+noise TinyMem model: same
data and seed, memorization per duplication class and held-out perplexity.

    python benchmarks/goldfish_table.py [--runs runs/goldfish] [--k 4]

Each cell is `hf-memmit train --task language --artifact noise --layers 4 --profile quick --seed 0` (plus the
Goldfish options) in RUNS/<cell>; a finished cell is skipped and an interrupted one resumes. Writes
benchmarks/results/goldfish_language_noise.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import environment, md_table, train_cell, write_results

from hf_memmit.tinymem import read_run_info

BASE = ["--task", "language", "--artifact", "noise", "--layers", "4", "--profile", "quick", "--seed", "0"]


def cells(k: int) -> dict[str, list[str]]:
    return {"plain": [], f"goldfish_k{k}": ["--regularizer", "goldfish", "--set", f"k={k}"]}


def row(name: str, runs: Path) -> dict:
    info = read_run_info(runs / name)
    final = info["final_metrics"]
    classes = sorted(k for k in final if k.startswith("memorized_dup"))
    return {"cell": name, "regularizer": info.get("regularizer", "none"),
            "config": info.get("regularizer_config") or "-",
            "memorized_%": round(100 * final["memorized"], 2),
            "memorized_rows": f"{final['memorized_count']}/{final['qualifying']}",
            **{f"{c.replace('memorized_dup', 'mem_10^')}_%": round(100 * final[c], 2) for c in classes},
            "perplexity": round(final["perplexity"], 2), "train_seconds": round(info["train_seconds_this_session"]),
            "curve_memorized_rows": [c["memorized_count"] for c in info["curve"]],
            "curve_perplexity": [round(c["perplexity"], 1) for c in info["curve"]]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs/goldfish")
    ap.add_argument("--k", type=int, default=4)
    args = ap.parse_args(argv)
    runs = Path(args.runs)
    for name, options in cells(args.k).items():
        train_cell(runs / name, [*BASE, *options])
    rows = [row(name, runs) for name in cells(args.k)]
    plain, goldfish = rows
    change = 100 * (goldfish["perplexity"] / plain["perplexity"] - 1)
    columns = [c for c in rows[0] if not c.startswith("curve")]
    markdown = (f"# Goldfish loss (k = {args.k}, h = 13) vs plain training: quick 4-layer language+noise, seed 0\n\n"
                "Memorized = the noised training rows whose (50, 50) continuation the model reproduces, per "
                "duplication class (10^0, 10^1, 10^2 copies); perplexity on the held-out test split.\n\n"
                f"{md_table(rows, columns)}\n\nHeld-out perplexity change: {change:+.1f}%. Memorized rows at each "
                f"evaluation (every 0.25 epoch): plain {plain['curve_memorized_rows']}, Goldfish "
                f"{goldfish['curve_memorized_rows']}.\n")
    result = {"runs": str(runs), "rows": rows, "perplexity_change_%": change, "environment": environment()}
    write_results("goldfish_language_noise", result, markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
