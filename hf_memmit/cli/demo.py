"""`hf-memmit demo`: the end-to-end run on the embedded default (train -> measure -> unlearn -> measure)."""

from __future__ import annotations

from pathlib import Path

import click

from ..data.config import PROFILES
from ..tinymem import load_run, measure_model, run_unlearning
from .common import console, fmt, metrics_table
from .group import main

# BalancedSubnet settings of the demo: the smallest schedule that unlearns the quick profile's 4-layer model
DEMO_UNLEARNING = {"ratio": 0.1, "epochs": 3}


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
@click.option("--layers", type=int, default=4, show_default=True)
@click.option("--profile", type=click.Choice(PROFILES), default="quick", show_default=True)
@click.option("--overwrite", is_flag=True, help="Retrain even if the demo model exists.")
def demo(out, layers, profile, overwrite):
    """End to end on the embedded default: train a TinyMem math+noise model, measure its memorization, unlearn it
    with BalancedSubnet, measure again and save the adapter."""
    from ..data import TinyMemDataConfig
    from ..tinymem import TrainConfig, is_finished, train_tinymem

    data = TinyMemDataConfig(task="math", artifact="noise", profile=profile)
    if overwrite or not is_finished(out):
        console.rule("1. train a TinyMem model that memorizes its noise artifacts")
        train_tinymem(out, data, TrainConfig(n_layer=layers), overwrite=overwrite,
                      on_metrics=lambda r: console.print(f"[dim]epoch {r['epoch']:g}[/]  memorized "
                                                         f"{fmt(r['memorized'])}  accuracy {fmt(r['accuracy'])}"))
    console.rule("2. measure memorization (k=50, l=50) and accuracy")
    model, dataset = load_run(out)
    before = measure_model(model, dataset, "math", "noise")
    console.print(metrics_table("TinyMem math+noise", {"trained model": before}))
    console.rule("3. unlearn the memorized rows with BalancedSubnet, measure again, save the adapter")
    adapter_dir = Path(out) / "balanced_subnet"
    record = run_unlearning(out, "balanced_subnet", str(adapter_dir), DEMO_UNLEARNING)
    console.print(metrics_table(f"BalancedSubnet ({record['seconds']:.1f} s, {record['forget_rows']} forget rows)",
                                {"before": record["before"], "after": record["after"]}))
    console.rule("4. one memorized row, before and after")
    show_memorized_row(model, dataset, out, adapter_dir)
    from ..bench import plot_tradeoff
    from ..bench.plots import save_png

    plot = adapter_dir / "memorization_vs_accuracy.png"
    save_png(plot_tradeoff([{**record, "status": "ok"}], {"balanced_subnet": [record]}, "accuracy",
                           "TinyMem math+noise demo"), plot)
    console.print(f"adapter: {adapter_dir}\nplot: {plot}")


def show_memorized_row(model, dataset, run_dir, adapter_dir: Path) -> None:
    """The first memorized artifact row as text: its prompt, its clean continuation, the noised one the model
    reproduces, and what the model continues with once the adapter is on (tokens that differ from the clean
    continuation in red)."""
    from transformers import AutoModelForCausalLM

    from ..hub import load_adapter
    from ..metrics import artifact_pairs, greedy_match_generate
    from ..tinymem import forget_set, tokenizer_for

    row = forget_set(model, dataset, "noise")[0]
    prompt, noisy, clean, _ = artifact_pairs(row, target_length=50)
    before = greedy_match_generate(model, [prompt], [noisy]).predictions[0]
    edited = load_adapter(AutoModelForCausalLM.from_pretrained(run_dir), str(adapter_dir))
    after = greedy_match_generate(edited, [prompt], [noisy]).predictions[0]
    from rich.markup import escape

    decode = lambda ids: escape(tokenizer_for("math").decode(ids))  # noqa: E731

    def text(ids, reference=None):  # red where a token differs from the clean continuation
        if reference is None:
            return decode(ids)
        return "".join(f"[red]{decode([t])}[/]" if t != r else decode([t]) for t, r in zip(ids, reference))

    for label, ids, ref in (("prompt", prompt, None), ("clean continuation", clean, None),
                            ("memorized (noised) continuation", noisy, clean),
                            ("model before unlearning", before, clean), ("model after unlearning", after, clean)):
        console.print(f"[bold]{label:>32}[/]  {text(ids, ref)}", soft_wrap=True, highlight=False)
