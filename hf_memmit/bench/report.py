"""`hf-memmit report`: a bench folder's tables (the shape of Sakarvadia et al. 2025, Tables 1-2, with the paper's
numbers beside ours), JSON, and plots."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from statistics import mean

from ..tinymem import read_run_info
from ..utils import atomic_write_bytes, atomic_write_json
from .paper_tables import PAPER_TABLES
from .plots import plot_tradeoff, plot_training_curves, plot_wall_time, save_png
from .results import model_dir, read_runs
from .selection import best_runs, quality_key, unlearning_score
from .settings import Setting


def _settings(results_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results_dir / "settings").glob("*.json"))]


def _selected(rows_by_setting: dict, settings: list[dict]) -> dict[str, dict[str, dict]]:
    """setting name -> method -> its selected run (the fastest of the tying best runs) plus its score."""
    out = {}
    for s in settings:
        task = s["setting"]["task"]
        best = best_runs(rows_by_setting.get(s["name"], []), task, s["budget_seconds"])
        out[s["name"]] = {m: {**min(runs, key=lambda r: r["seconds"]), "ties": len(runs),
                              "score": unlearning_score(runs[0], task)} for m, runs in best.items()}
    return out


def _fmt(v, digits=2):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}" if isinstance(v, float) else str(v)


def _mean_or_none(values: list[float]) -> float | None:
    return mean(values) if values else None  # None prints as "-": not measured, not 0%


def _group_table(group: str, settings: list[dict], selected: dict) -> tuple[str, dict]:
    task = settings[0]["setting"]["task"]
    key = quality_key(task)
    scale = 100.0 if key == "accuracy" else 1.0
    paper = PAPER_TABLES.get(Setting(**settings[0]["setting"]).kind, {})
    names = [s["name"] for s in settings]
    methods = list(dict.fromkeys(m for n in names for m in selected.get(n, {})))
    base = [s["before"] for s in settings]
    dup_keys = sorted(k for k in base[0] if k.startswith("memorized_dup")) if task == "language" else []
    if len(dup_keys) < 2:  # one class (a backdoor): the overall column says it all, as `measure_model` does
        dup_keys = []

    def averaged(measured: list[dict]) -> dict:  # seed means of % memorized (overall, per class) and quality
        return {"mem_after": mean(100 * m["memorized"] for m in measured),
                "quality_after": mean(scale * m[key] for m in measured),
                **{k: _mean_or_none([100 * m[k] for m in measured if k in m]) for k in dup_keys}}

    ft = [s["extra_ft"] for s in settings]
    rows = [{"method": "unedited model", **averaged(base), "paper": paper.get("baseline")},
            {"method": "extra_ft", **averaged([f["after"] for f in ft]),
             "seconds": mean(s["budget_seconds"] for s in settings), "paper": paper.get("extra_ft"),
             "options": f"{ft[0]['epochs']:g} epochs run, seconds scaled to 5"}]
    for method in methods:
        runs = [selected[n][method] for n in names if method in selected.get(n, {})]
        rows.append({"method": method, **averaged([r["after"] for r in runs]),
                     "seconds": mean(r["seconds"] for r in runs), "score": mean(r["score"] for r in runs),
                     "seeds": len(runs), "options": "; ".join(json.dumps(r["options"], sort_keys=True) for r in runs),
                     "paper": paper.get(method)})
    scored = [r for r in rows if "score" in r]
    winner = min(scored, key=lambda r: r["score"])["method"] if scored else None
    qname = "accuracy (%)" if key == "accuracy" else "perplexity"
    dup_head = "".join(f" | mem. 10^{k.removeprefix('memorized_dup')} copies (%)" for k in dup_keys)
    lines = [f"### {group} ({len(settings)} seed{'s' if len(settings) > 1 else ''}; "
             f"Extra-FT budget {mean(s['budget_seconds'] for s in settings):.1f} s)", "",
             f"Before unlearning: {rows[0]['mem_after']:.2f}% memorized, {qname} {_fmt(rows[0]['quality_after'])}. "
             f"Best trade-off by the paper's score: **{winner}**.", "",
             f"| method | memorized (%) | {qname}{dup_head} | seconds | score | selected options | "
             f"paper: memorized (%) | paper: {qname} | paper: seconds |",
             "|---|---|---|" + "---|" * len(dup_keys) + "---|---|---|---|---|---|"]
    for r in rows:
        p = r.get("paper") or (None, None, None)
        dups = "".join(f" | {_fmt(r.get(k))}" for k in dup_keys)
        lines.append(f"| {r['method']} | {_fmt(r['mem_after'])} | {_fmt(r['quality_after'])}{dups} | "
                     f"{_fmt(r.get('seconds'))} | {_fmt(r.get('score'))} | {r.get('options', '')} | {_fmt(p[0])} | "
                     f"{_fmt(p[1])} | {_fmt(p[2])} |")
    return "\n".join(lines), {"group": group, "task": task, "winner": winner, "rows": rows}


def write_report(results_dir: str | os.PathLike) -> dict:
    """Select each method's best run per setting, then write `report.md`, `report.json` and `plots/*.png` into
    `results_dir`; returns the report's JSON."""
    results_dir = Path(results_dir)
    settings = _settings(results_dir)
    if not settings:
        raise FileNotFoundError(f"{results_dir} holds no bench settings (no settings/*.json); allowed: a folder "
                                "written by `hf-memmit bench`")
    runs = read_runs(results_dir)
    by_setting: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_setting[r["setting"]].append(r)
    selected = _selected(by_setting, settings)
    groups: dict[str, list[dict]] = defaultdict(list)
    for s in settings:
        groups[s["group"]].append(s)
    plots_dir = results_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    sections, tables, plots = [], [], []
    for group, members in groups.items():
        md, table = _group_table(group, members, selected)
        sections.append(md)
        tables.append(table)
        key = quality_key(members[0]["setting"]["task"])
        for s in members:
            best = {m: [r] for m, r in selected[s["name"]].items()}
            plots.append(_save(plot_tradeoff(by_setting[s["name"]], best, key, s["name"]),
                               plots_dir / f"tradeoff_{s['name']}.png"))
        curves = {s["name"]: read_run_info(model_dir(results_dir, s["name"])).get("curve", []) for s in members}
        plots.append(_save(plot_training_curves(curves, group), plots_dir / f"training_{group}.png"))
        seconds = {r["method"]: r["seconds"] for r in table["rows"] if r.get("seconds") is not None}
        plots.append(_save(plot_wall_time(seconds, mean(s["budget_seconds"] for s in members), group),
                           plots_dir / f"time_{group}.png"))
    header = (f"# Unlearning bench: {results_dir.name}\n\n{len(runs)} runs over {len(settings)} settings. Each "
              "method's row is its best run by the paper's selection (math: argmin(M - A); language: "
              "argmin(M + P + alpha), alpha = 100 iff M == 0; only runs within the Extra fine-tuning time count, "
              "unless none of the method's do), averaged over seeds; accuracy / perplexity and memorization are "
              "after unlearning. The paper's columns are its Tables 1-2 (4-layer models, paper-scale data).\n")
    md = header + "\n\n".join(sections) + "\n\nPlots: " + ", ".join(f"`plots/{Path(p).name}`" for p in plots) + "\n"
    report = {"results_dir": str(results_dir), "runs": len(runs), "tables": tables, "plots": plots}
    atomic_write_bytes(results_dir / "report.md", md.encode())
    atomic_write_json(results_dir / "report.json", report)
    return report


def _save(fig, path: Path) -> str:
    save_png(fig, path)
    return str(path)
