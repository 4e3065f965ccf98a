"""MemSinks data designs side by side, from finished `memsinks_grid.py` results: for each design the paper's
default cell (g = 0.7, p = 0.3) and the best cell per seed, and the (repetitions, epochs) axes; which of the axes
(domain, repetitions, epochs) moved the gap closure most (Ghosal et al. 2025, "Memorization Sinks").

    python benchmarks/memsinks_designs.py [--design wikipedia=memsinks_grid two-domain=memsinks_grid_two_domain]
        [--axes memsinks_axes_two_domain] [--name memsinks_designs]

Names are result stems in benchmarks/results. The best cell: most seeds meeting all three claims, then the
highest mean closure (no rescale).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, md_table, write_results

DEFAULT_CELL = (0.7, 0.3)


def load(stem: str) -> dict:
    return json.loads((RESULTS / f"{stem}.json").read_text())


def best_cell(grid: dict) -> tuple[float, float]:
    means = [m for m in grid["seed_means"] if m["seeds"] == len(grid["seeds"])]
    best = max(means, key=lambda m: (m["seeds_all_claims"], m["closure_none"]))
    return best["g"], best["p"]


def seed_rows(design: str, grid: dict, cell: tuple[float, float], which: str) -> list[dict]:
    """One row per seed of a cell: closure (no rescale, the released code's rescale), validation loss against
    standard and dedup, the claims; with two domains, the general validation set's too."""
    dedup = {b["seed"]: b for b in grid["baselines"]}
    rows = []
    for c in grid["cells"]:
        if (c["g"], c["p"]) != cell:
            continue
        row = {"design": design, "cell": which, "g": c["g"], "p": c["p"], "seed": c["seed"],
               "closure_none": c["closure_none"], "closure_code": c["closure_code"],
               "L_val": c["L_val"], "L_val_standard": dedup[c["seed"]]["standard_L_val"], "L_val_dedup": c["L_val_dedup"],
               "L_val_vs_standard": c["L_val_vs_standard"], "all_claims": c["all_claims"]}
        if "all_claims_general" in c:
            row.update(L_val_general=c["L_val_general"], L_val_general_vs_standard=c["L_val_general_vs_standard"],
                       L_val_general_dedup=c["L_val_general_dedup"], all_claims_general=c["all_claims_general"])
        rows.append(row)
    return sorted(rows, key=lambda r: r["seed"])


def axis_rows(axes: dict) -> list[dict]:
    base = {(b["seed"], b["repeats"], b["epochs"]): b for b in axes["baselines"]}
    rows = []
    for c in axes["cells"]:
        b = base[c["seed"], c["repeats"], c["epochs"]]
        row = {"seed": c["seed"], "repeats": c["repeats"], "epochs": c["epochs"], "g": c["g"], "p": c["p"],
               "G_standard": b["G_standard"], "closure_none": c["closure_none"], "closure_code": c["closure_code"],
               "L_val_vs_standard": c["L_val_vs_standard"], "L_val_below_dedup": c["L_val_better_than_dedup"],
               "all_claims": c["all_claims"]}
        if "all_claims_general" in c:
            row.update(L_val_general_vs_standard=c["L_val_general_vs_standard"],
                       general_below_dedup=c["general_better_than_dedup"], all_claims_general=c["all_claims_general"])
        rows.append(row)
    return sorted(rows, key=lambda r: (r["seed"], r["epochs"], r["repeats"]))


def spread(rows: list[dict], keep, key: str) -> dict | None:
    """Closure range over the rows `keep` selects (one axis varied, the other at its base value)."""
    chosen = [r for r in rows if keep(r)]
    if len(chosen) < 2:
        return None
    lo, hi = min(chosen, key=lambda r: r["closure_none"]), max(chosen, key=lambda r: r["closure_none"])
    return {"axis": key, "values": [r[key] for r in chosen], "closure": [r["closure_none"] for r in chosen],
            "range": hi["closure_none"] - lo["closure_none"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--design", nargs="+", default=["wikipedia=memsinks_grid", "two-domain=memsinks_grid_two_domain"],
                    help="NAME=RESULT_STEM of a finished grid")
    ap.add_argument("--axes", default="memsinks_axes_two_domain", help="result stem of a (repetitions, epochs) run")
    ap.add_argument("--name", default="memsinks_designs")
    args = ap.parse_args(argv)
    designs = dict(d.split("=", 1) for d in args.design)
    cells, means = [], {}
    for design, stem in designs.items():
        grid = load(stem)
        best = best_cell(grid)
        cells += seed_rows(design, grid, DEFAULT_CELL, "default")
        if best != DEFAULT_CELL:
            cells += seed_rows(design, grid, best, "best")
        means[design] = {f"{m['g']}/{m['p']}": m for m in grid["seed_means"]}
    axes = axis_rows(load(args.axes)) if args.axes and (RESULTS / f"{args.axes}.json").exists() else []
    base = (64, 1.0)
    moved = [s for s in (spread(axes, lambda r: r["epochs"] == base[1] and r["seed"] == 0, "repeats"),
                         spread(axes, lambda r: r["repeats"] == base[0] and r["seed"] == 0, "epochs")) if s]
    default = f"{DEFAULT_CELL[0]}/{DEFAULT_CELL[1]}"
    if len(designs) == 2 and all(default in m for m in means.values()):
        (d1, m1), (d2, m2) = means.items()
        moved.append({"axis": "domain", "values": [d1, d2],
                      "closure": [m1[default]["closure_none"], m2[default]["closure_none"]],
                      "range": abs(m1[default]["closure_none"] - m2[default]["closure_none"])})
    result = {"designs": designs, "cells": cells, "axes": axes, "closure_moved_by": moved}
    columns = ["design", "cell", "g", "p", "seed", "closure_none", "closure_code", "L_val", "L_val_standard",
               "L_val_dedup", "L_val_vs_standard", "all_claims", "L_val_general", "L_val_general_vs_standard",
               "L_val_general_dedup", "all_claims_general"]
    axis_columns = ["seed", "repeats", "epochs", "g", "p", "G_standard", "closure_none", "closure_code",
                    "L_val_vs_standard", "L_val_below_dedup", "all_claims", "L_val_general_vs_standard",
                    "general_below_dedup", "all_claims_general"]
    md = ["# MemSinks: the data designs compared", "",
          "Closure = 1 - G(sinks dropped) / G(standard) with G = L_ho - L_rep, same seed and data; `none`: general "
          "units as trained (headline), `code`: scaled by (g + p) / g as the released code. Claims: closure >= 0.5, "
          "L_val within 2% of standard's, below dedup's. Two-domain: L_val on the repeated domain's validation "
          "set, L_val_general on the general corpus's. Sources: " + ", ".join(f"{d} `{s}`" for d, s in
                                                                              designs.items()), "",
          "## Default and best cells, per seed", "", md_table(cells, columns), "",
          f"## Repetitions and epochs (`{args.axes}`)", "", md_table(axes, axis_columns) if axes else "(not run)", "",
          "## What moved the closure (seed 0 for repetitions and epochs; mean over seeds for domain)", "",
          md_table([{**m, "values": " / ".join(map(str, m["values"])),
                     "closure": " / ".join(f"{c:.3f}" for c in m["closure"])} for m in moved],
                   ["axis", "values", "closure", "range"]), "",
          "Reproduce: `python benchmarks/memsinks_designs.py " + " ".join(sys.argv[1:]) + "`"]
    write_results(args.name, result, "\n".join(md) + "\n")
    return result


if __name__ == "__main__":
    main()
