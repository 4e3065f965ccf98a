"""Train-time regularizers and fine-tuning recipes on the quick 4-layer math+noise model, against plain training
(same data and seed), with the TinyMem paper's 4-layer math+noise numbers beside ours.

    python benchmarks/regularizers_table.py [--cells plain,spectral_norm,...] [--runs runs/regularizers]

Each training cell is `hf-memmit train --task math --artifact noise --layers 4 --profile quick` plus the
regularizer options below, in RUNS/<cell>; the fine-tuning cells run `finetune_tinymem` on the plain model into
RUNS/plain-<cell>. A finished cell is skipped and an interrupted one resumes, so the script can be re-run
until the table is complete; the table is rewritten after every cell from whatever has finished.
Writes benchmarks/results/regularizers.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import environment, md_table, train_cell, write_results

from hf_memmit.tinymem import FINETUNE_FILE, FinetuneConfig, finetune_tinymem, is_finished, read_run_info

BASE = ["--task", "math", "--artifact", "noise", "--layers", "4", "--profile", "quick", "--seed", "0"]
# Hyperparameters (one point each, CPU budget):
# - spectral norm as TinyMem's code, whose numbers the paper reports: lambda 0.01 (its default), sigma, per head;
# - loss truncation: drop 0.1 (top of TinyMem's grid; the quick data has ~6% noised rows), warm-up and window
#   640 sequences = the reference's 10000 scaled to the same share of an epoch (10000 / 27k paper rows ~ 0.37);
# - example-tied dropout: TinyMem's p_gen 0.2, p_mem 0.1.
TRAIN_CELLS = {
    "plain": [],
    "spectral_norm": ["--regularizer", "spectral_norm", "--spectral-weight", "0.01", "--spectral-penalty", "sigma",
                      "--per-head"],
    # the top of TinyMem's lambda grid, after lambda 0.01 left memorization above the plain run's
    "spectral_norm_lambda0.1": ["--regularizer", "spectral_norm", "--spectral-weight", "0.1", "--spectral-penalty",
                                "sigma", "--per-head"],
    "loss_truncation": ["--regularizer", "loss_truncation", "--drop-fraction", "0.1", "--truncation-warmup", "640",
                        "--truncation-window", "640"],
    "example_tied_dropout": ["--regularizer", "example_tied_dropout", "--p-gen", "0.2", "--p-mem", "0.1"],
}
# fine-tuning: (data, learning rate); None = the run's own peak LR (2e-3 for quick), as the paper's "same optimizer
# settings"; clean data is also run at a quarter of it, because a fresh AdamW at the peak LR on 100 rows costs
# accuracy on the other tasks.
FT_CELLS = {"ft_clean": ("clean", None), "ft_extra": ("extra", None), "ft_both": ("both", None),
            "ft_clean_lr5e-4": ("clean", 5e-4)}
# Sakarvadia et al. 2025 ("Mitigating Memorization in Language Models"), 4-layer math+noise: (% memorized, % accuracy)
PAPER = {"plain": (34.73, 96.98), "spectral_norm": (0.05, 96.77), "loss_truncation": (11.96, 95.29),
         "example_tied_dropout": (0.0, 41.6)}


def run_ft_cell(name: str, runs: Path) -> None:
    data, lr = FT_CELLS[name]
    out = runs / f"plain-{name.replace('_', '-')}"
    if (out / FINETUNE_FILE).exists():
        print(f"{name}: finished, skipped", flush=True)
        return
    if not is_finished(runs / "plain"):
        raise RuntimeError(f"{name} needs the plain model; run the `plain` cell first")
    print(f"running: finetune {runs / 'plain'} --data {data} --lr {lr}", flush=True)
    finetune_tinymem(runs / "plain", FinetuneConfig(data=data, learning_rate=lr), out)


def train_row(name: str, runs: Path) -> dict | None:
    if not is_finished(runs / name):
        return None
    info = read_run_info(runs / name)
    m = info["final_metrics"]
    paper = PAPER.get(name.split("_lambda")[0], (None, None))
    return {"method": name, "settings": " ".join(TRAIN_CELLS[name][2:]) or "-",
            "mem_%": 100 * m["memorized"], "acc_%": 100 * m["accuracy"],
            "paper_mem_%": paper[0], "paper_acc_%": paper[1], "seconds": info["train_seconds_this_session"],
            "resumed": bool(info.get("resumed_from")), "memorized_rows": f"{m['memorized_count']}/{m['qualifying']}"}


def ft_row(name: str, runs: Path) -> dict | None:
    path = runs / f"plain-{name.replace('_', '-')}" / FINETUNE_FILE
    if not path.exists():
        return None
    r = json.loads(path.read_text())
    b, a = r["before"], r["after"]
    return {"method": name, "rows": r["rows"], "epochs": r["config"]["epochs"], "steps": r["steps"],
            "lr": r["config"]["learning_rate"] or "run's", "mem_before_%": 100 * b["memorized"],
            "mem_after_%": 100 * a["memorized"], "acc_before_%": 100 * b["accuracy"], "acc_after_%": 100 * a["accuracy"],
            "acc_main_after_%": 100 * a["accuracy_main"], "train_seconds": r["train_seconds"],
            "memorized_rows_after": f"{a['memorized_count']}/{a['qualifying']}"}


def write_table(runs: Path, out: Path) -> None:
    train = [r for r in (train_row(n, runs) for n in TRAIN_CELLS) if r]
    ft = [r for r in (ft_row(n, runs) for n in FT_CELLS) if r]
    md = ("## Regularizers on the quick 4-layer math+noise model (seed 0)\n\n"
          "Ours: final memorization of the noised training rows and accuracy on the clean test rows; seconds = "
          "training wall time including the periodic memorization checks. Paper: TinyMem 4-layer math+noise.\n\n"
          f"{md_table(train, list(dict.fromkeys(k for r in train for k in r)))}\n\n"
          "## Fine-tuning the plain model (5 extra epochs, fresh AdamW with the run's settings, constant LR)\n\n"
          "acc = mean over the five tasks' test rows; acc_main = the 7-task (where the noise was).\n\n"
          f"{md_table(ft, list(dict.fromkeys(k for r in ft for k in r)))}\n")
    write_results("regularizers", {"runs": str(runs), "train": train, "finetune": ft,
                                   "train_cells": TRAIN_CELLS, "paper": PAPER, "environment": environment()}, md, out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", default=",".join([*TRAIN_CELLS, *FT_CELLS]))
    p.add_argument("--runs", type=Path, default=Path("runs/regularizers"))
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    for name in args.cells.split(","):
        if name not in TRAIN_CELLS and name not in FT_CELLS:
            raise SystemExit(f"unknown cell {name!r}; cells: {', '.join([*TRAIN_CELLS, *FT_CELLS])}")
        if name in TRAIN_CELLS:
            train_cell(args.runs / name, [*BASE, *TRAIN_CELLS[name]])
        else:
            run_ft_cell(name, args.runs)
        write_table(args.runs, args.out)
    write_table(args.runs, args.out)


if __name__ == "__main__":
    main()
