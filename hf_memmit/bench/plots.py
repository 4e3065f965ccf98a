"""The bench's figures, drawn with matplotlib's object API (no pyplot state, no display needed): memorization
against accuracy or perplexity per method with the Pareto front, memorization during training, and wall time
per method. Each function returns the `Figure`; `save_png` writes one atomically."""

from __future__ import annotations

import io
import math
import os

from matplotlib import colormaps
from matplotlib.figure import Figure

from ..utils import atomic_write_bytes

QUALITY_LABEL = {"accuracy": "accuracy after unlearning (%)", "perplexity": "perplexity after unlearning (log scale)"}


def save_png(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (x: % memorized, lower is better; y: quality), by x."""
    sign = 1 if higher_is_better else -1
    front, best_y = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -sign * p[1])):
        if sign * y > best_y:
            front.append((x, y))
            best_y = sign * y
    return front


def _quality(value: float, key: str) -> float:
    return 100.0 * value if key == "accuracy" else value


def plot_tradeoff(rows: list[dict], best: dict[str, list[dict]], key: str, title: str) -> Figure:
    """Every run of a setting as a point (% memorized after, accuracy % or perplexity after), one colour per
    method; each method's selected run circled; the unedited model as a star; the Pareto front as a line."""
    fig = Figure(figsize=(8, 5.5))
    ax = fig.add_subplot()
    ok = [r for r in rows if r.get("status", "ok") == "ok"]
    methods = list(dict.fromkeys(r["method"] for r in ok))
    colors = colormaps["tab20"]  # 11+ methods: the default 10-colour cycle would repeat
    for i, method in enumerate(methods):
        color = colors(2 * i % 20 + (2 * i // 20) % 2)
        pts = [(100 * r["after"]["memorized"], _quality(r["after"][key], key)) for r in ok if r["method"] == method]
        ax.scatter(*zip(*pts), s=22, alpha=0.8, color=color, label=method)
        chosen = [(100 * r["after"]["memorized"], _quality(r["after"][key], key)) for r in best.get(method, [])]
        if chosen:
            ax.scatter(*zip(*chosen), s=140, facecolors="none", edgecolors=[color], linewidths=2)
    if ok:
        before = ok[0]["before"]
        ax.scatter([100 * before["memorized"]], [_quality(before[key], key)], marker="*", s=260, color="black",
                   label="unedited model", zorder=5)
        front = pareto_front([(100 * r["after"]["memorized"], _quality(r["after"][key], key)) for r in ok],
                             higher_is_better=key == "accuracy")
        ax.plot(*zip(*front), color="grey", linestyle="--", linewidth=1.2, label="Pareto front", zorder=1)
    if key == "perplexity":
        ax.set_yscale("log")
    ax.set_xlabel("memorized after unlearning (% of forget rows)")
    ax.set_ylabel(QUALITY_LABEL[key])
    ax.set_title(f"{title}: memorization vs {key} (circled: selected run)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="best")
    return fig


def plot_training_curves(curves: dict[str, list[dict]], title: str) -> Figure:
    """% memorized of the artifact rows against training epoch, one line per model (and per duplication class
    when a model has several)."""
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    for name, curve in curves.items():
        epochs = [e["epoch"] for e in curve]
        classes = sorted(k for k in (curve[0] if curve else {}) if k.startswith("memorized_dup"))
        series = [(f"{name} 10^{k.removeprefix('memorized_dup')} copies", k) for k in classes] if len(classes) > 1 \
            else [(name, "memorized")]
        for label, k in series:
            ax.plot(epochs, [100 * e[k] for e in curve], marker="o", markersize=3, label=label)
    ax.set_xlabel("training epoch")
    ax.set_ylabel("memorized artifact rows (%)")
    ax.set_title(f"{title}: memorization during training")
    ax.set_ylim(-3, 103)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_wall_time(seconds: dict[str, float], budget_seconds: float | None, title: str) -> Figure:
    """Seconds of each method's selected run (log scale), with the Extra fine-tuning budget as a line."""
    fig = Figure(figsize=(8, 0.45 * max(4, len(seconds)) + 1))
    ax = fig.add_subplot()
    names = list(seconds)
    ax.barh(names, [max(seconds[n], 1e-3) for n in names], color="tab:blue")
    if budget_seconds is not None:
        ax.axvline(budget_seconds, color="tab:red", linestyle="--", label=f"Extra FT budget ({budget_seconds:.0f} s)")
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("unlearning wall time of the selected run (seconds, log scale)")
    ax.set_ylabel("method")
    ax.set_title(f"{title}: time per method")
    ax.grid(True, axis="x", alpha=0.3)
    return fig
