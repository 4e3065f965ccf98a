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
    record = run_unlearning(out, "balanced_subnet", str(Path(out) / "balanced_subnet"), DEMO_UNLEARNING)
    console.print(metrics_table(f"BalancedSubnet ({record['seconds']:.1f} s, {record['forget_rows']} forget rows)",
                                {"before": record["before"], "after": record["after"]}))
    console.print(f"adapter: {Path(out) / 'balanced_subnet'}")
