"""MemSinks over the paper's Table-3 grid (g in {0.1, 0.3, 0.5, 0.7} x p in {0.1, 0.3, 0.5}) on the CPU-sized
recipe, against standard training and the dedup baseline of the same seed and data (Ghosal et al. 2025,
"Memorization Sinks"), at one or more (repetitions, epochs) points.

    python benchmarks/memsinks_grid.py [--seeds 0 1] [--g 0.1 0.3] [--p 0.3] [--points 64:1 128:2] [--jobs 2]
        [--runs runs/memsinks_grid] [--name memsinks_grid] [--shared RECIPE ARGS...]

Every run is `recipes/memsinks_smollm.py` with the shared settings, in RUNS/seed<S>/r<R>_e<E>/<standard|dedup|
gG_pP>; a run whose result file exists is skipped, so the script can be re-run until the table is complete.
`--jobs` runs that many recipes at once, one torch thread each. Writes benchmarks/results/NAME.{json,md}: per cell
the gap closure of the sinks-dropped model (each rescale), its validation loss against standard and dedup, and
whether the paper's three claims hold (also on the general-domain validation set when the repeated documents come
from another corpus); then the mean over seeds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import environment, md_table, write_results

from hf_memmit.metrics.memsinks import gap_closure, paper_claims
from hf_memmit.trainers.tied_dropout.memsinks import (
    DROP_RESCALES,
    HEADLINE,
    OWN_SINKS,
    PLAIN,
    SINKS_ON,
    sinks_dropped,
)

RECIPE = Path(__file__).parent.parent / "recipes" / "memsinks_smollm.py"
# The CPU scale of issue 8 (benchmarks/results/memsinks_cpu.md): 2.1 M-parameter SmolLM shape, 32 Wikipedia
# documents among 3,000 general ones (the repetitions and epochs are the points' axes).
SHARED = ["--preset", "cpu", "--vocab-top", "8192", "--n-general", "3000", "--n-repeated", "32", "--batch-size", "16",
          "--threads", "1"]


def parse_point(text: str) -> tuple[int, float]:
    """'R:E' -> (repetitions, epochs)."""
    try:
        repeats, epochs = text.split(":")
        point = int(repeats), float(epochs)
    except ValueError:
        raise argparse.ArgumentTypeError(f"point {text!r}: allowed REPEATS:EPOCHS, e.g. 64:1") from None
    if point[0] < 1 or point[1] <= 0:
        raise argparse.ArgumentTypeError(f"point {text!r}: repetitions >= 1 and epochs > 0 allowed")
    return point


def point_name(point: tuple[int, float]) -> str:
    return f"r{point[0]}_e{point[1]:g}"


def run_dir(runs: Path, seed: int, point: tuple[int, float], name: str) -> Path:
    return runs / f"seed{seed}" / point_name(point) / name


def result_file(out: Path, mode: str) -> Path:
    return out / f"memsinks_{mode}.json"


def launch(out: Path, mode: str, seed: int, extra: list[str], shared: list[str]) -> None:
    if result_file(out, mode).exists():
        print(f"{out}: finished, skipped", flush=True)
        return
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(RECIPE), "--mode", mode, "--out", str(out), *shared, "--seed", str(seed), *extra]
    sys.stdout.write("running: " + " ".join(cmd) + "\n")  # one write: threads print concurrently
    sys.stdout.flush()
    with open(out / "train.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)


def cell_name(g: float, p: float) -> str:
    return f"g{g}_p{p}"


def load_metrics(out: Path, mode: str) -> dict | None:
    """A finished run's metrics by eval mode, or None while the run is missing."""
    path = result_file(out, mode)
    return json.loads(path.read_text())["metrics"] if path.exists() else None


def load_baselines(runs: Path, seed: int, point) -> tuple[dict, dict] | None:
    """(standard, dedup) metrics of one seed and point, read once for all its cells; None until both finished."""
    std, dedup = (load_metrics(run_dir(runs, seed, point, m), m) for m in ("standard", "dedup"))
    return (std[PLAIN], dedup[PLAIN]) if std and dedup else None


def general_claims(head: dict, standard: dict, dedup: dict) -> dict:
    """The two validation-loss claims on the general-domain validation set (two-domain data only)."""
    if "L_val_general" not in head:
        return {}
    def as_val(m):
        return {"gap": m["gap"], "L_val": m["L_val_general"]}

    claims = paper_claims(as_val(head), as_val(standard), as_val(dedup))
    return {"L_val_general": head["L_val_general"],
            "L_val_general_vs_standard": head["L_val_general"] / standard["L_val_general"] - 1,
            "L_val_general_dedup": dedup["L_val_general"],
            "general_within_2pct": claims["L_val_within_2pct"],
            "general_better_than_dedup": claims["L_val_better_than_dedup"]}


def cell_row(runs: Path, seed: int, point, g: float, p: float, baselines: tuple[dict, dict]) -> dict | None:
    path = result_file(run_dir(runs, seed, point, cell_name(g, p)), "memsinks")
    if not path.exists():
        return None
    ms = json.loads(path.read_text())
    (s, d), m = baselines, ms["metrics"]
    row = {"seed": seed, "repeats": point[0], "epochs": point[1], "g": g, "p": p, "G_standard": s["gap"]}
    for r in DROP_RESCALES:
        row[f"closure_{r}"] = gap_closure(m[sinks_dropped(r)]["gap"], s["gap"])
    head = m[HEADLINE]
    claims = paper_claims(head, s, d)
    row.update({"closure_sinks_on": gap_closure(m[SINKS_ON]["gap"], s["gap"]), "G_own_sinks": m[OWN_SINKS]["gap"],
                "L_val": head["L_val"], "L_val_vs_standard": head["L_val"] / s["L_val"] - 1,
                "L_val_dedup": d["L_val"], "train_seconds": ms["train"]["seconds"]})
    row.update({k: v for k, v in claims.items() if k != "gap_closure"})  # = closure_none
    row["all_claims"] = row["gap_closure_ok"] and row["L_val_within_2pct"] and row["L_val_better_than_dedup"]
    general = general_claims(head, s, d)
    if general:
        row.update(general)
        row["all_claims_general"] = (row["gap_closure_ok"] and general["general_within_2pct"]
                                     and general["general_better_than_dedup"])
    return row


def baseline_row(seed: int, point, baselines: tuple[dict, dict]) -> dict:
    s, d = baselines
    row = {"seed": seed, "repeats": point[0], "epochs": point[1], "standard_L_rep": s["L_rep"],
           "standard_L_ho": s["L_ho"], "G_standard": s["gap"], "standard_L_val": s["L_val"], "dedup_G": d["gap"],
           "dedup_L_val": d["L_val"]}
    if "L_val_general" in s:
        row.update(standard_L_val_general=s["L_val_general"], dedup_L_val_general=d["L_val_general"])
    return row


def seed_mean_rows(cells: list[dict]) -> list[dict]:
    """One row per (point, g, p): the headline numbers averaged over the seeds run, and how many seeds meet all
    claims."""
    groups: dict[tuple, list[dict]] = {}
    for row in cells:
        groups.setdefault((row["repeats"], row["epochs"], row["g"], row["p"]), []).append(row)
    mean = lambda rows, key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    out = []
    for (repeats, epochs, g, p), rows in groups.items():
        row = {"repeats": repeats, "epochs": epochs, "g": g, "p": p, "seeds": len(rows),
               "closure_none": mean(rows, "closure_none"), "closure_code": mean(rows, "closure_code"),
               "closure_mass": mean(rows, "closure_mass"), "L_val_vs_standard": mean(rows, "L_val_vs_standard"),
               "seeds_all_claims": sum(r["all_claims"] for r in rows)}
        if all("all_claims_general" in r for r in rows):
            row["L_val_general_vs_standard"] = mean(rows, "L_val_general_vs_standard")
            row["seeds_all_claims_general"] = sum(r["all_claims_general"] for r in rows)
        out.append(row)
    return out


def report(args, runs: Path) -> dict:
    finished = {(seed, point): b for seed, point in itertools.product(args.seeds, args.points)
                if (b := load_baselines(runs, seed, point)) is not None}
    # closure is 1 - G / G_standard: undefined where standard training shows no gap (listed, not scored)
    no_gap = [f"seed {seed} {point_name(point)}" for (seed, point), (s, _) in finished.items() if not s["gap"] > 0]
    cells = [row for (seed, point), g, p in itertools.product(finished, args.g, args.p)
             if finished[seed, point][0]["gap"] > 0
             and (row := cell_row(runs, seed, point, g, p, finished[seed, point])) is not None]
    baselines = [baseline_row(seed, point, b) for (seed, point), b in finished.items()]
    means = seed_mean_rows(cells)
    result = {"shared_args": args.shared, "seeds": args.seeds, "points": args.points, "g": args.g, "p": args.p,
              "baselines": baselines, "no_standard_gap": no_gap, "cells": cells, "seed_means": means, "environment": environment()}
    columns = ["seed", "repeats", "epochs", "g", "p", "closure_none", "closure_code", "closure_mass",
               "closure_sinks_on", "G_own_sinks", "L_val", "L_val_vs_standard", "L_val_dedup", "all_claims"]
    if cells and "all_claims_general" in cells[0]:
        columns += ["L_val_general_vs_standard", "general_better_than_dedup", "all_claims_general"]
    md = ["# MemSinks Table-3 grid, CPU scale", "",
          "Gap G = L_ho - L_rep; closure = 1 - G(MemSinks, sinks dropped) / G(standard), same seed and point "
          "(repetitions, epochs); headline rescale `none`. Claims: closure >= 0.5, L_val within 2% of standard, L_val "
          "below dedup's. With two domains L_val is the repeated domain's validation set and `*_general` the "
          "general corpus's.", "",
          "Shared recipe arguments: `" + " ".join(args.shared) + "`", "", "## Baselines", "",
          md_table(baselines, list(baselines[0]) if baselines else ["seed"]), "",
          "Standard training shows no gap (no closure): " + (", ".join(no_gap) or "none"), "",
          "## MemSinks cells", "",
          md_table(cells, columns), "", "## Mean over seeds", "",
          md_table(means, list(means[0]) if means else ["g"]), "",
          "Reproduce: `python benchmarks/memsinks_grid.py " + " ".join(sys.argv[1:]) + "`"]
    write_results(args.name, result, "\n".join(md) + "\n")
    return result


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--g", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.7])
    ap.add_argument("--p", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    ap.add_argument("--points", type=parse_point, nargs="+", default=[(64, 1.0)],
                    help="REPEATS:EPOCHS points; each has its own standard and dedup runs")
    ap.add_argument("--jobs", type=int, default=2, help="recipe runs at once (one torch thread each)")
    ap.add_argument("--runs", type=Path, default=Path("runs/memsinks_grid"))
    ap.add_argument("--name", default="memsinks_grid", help="results file stem in benchmarks/results")
    ap.add_argument("--shared", nargs=argparse.REMAINDER, default=SHARED,
                    help="recipe arguments shared by every run (last option; default: the CPU scale)")
    args = ap.parse_args(argv)
    def data(point):
        return ["--repeats", str(point[0]), "--epochs", f"{point[1]:g}"]

    jobs = [(run_dir(args.runs, s, pt, m), m, s, data(pt))
            for pt, s in itertools.product(args.points, args.seeds) for m in ("standard", "dedup")]
    jobs += [(run_dir(args.runs, s, pt, cell_name(g, p)), "memsinks", s, [*data(pt), "--g", str(g), "--p", str(p)])
             for pt, s, g, p in itertools.product(args.points, args.seeds, args.g, args.p)]
    with ThreadPoolExecutor(args.jobs) as pool:
        for done in [pool.submit(launch, *job, args.shared) for job in jobs]:
            done.result()  # re-raise a failed run
    return report(args, args.runs)


if __name__ == "__main__":
    main()
