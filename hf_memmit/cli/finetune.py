"""`hf-memmit finetune`: the fine-tuning mitigation recipes (clean / extra / both) on a trained TinyMem run."""

from __future__ import annotations

import click

from .common import console, fmt, metrics_table
from .group import main


@main.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--data", type=click.Choice(("clean", "extra", "both")), default="both", show_default=True,
              help="clean twins of the artifact rows, the non-artifact training rows, or both.")
@click.option("--epochs", type=float, default=5.0, show_default=True, help="Extra epochs (the paper: 5).")
@click.option("--batch-size", type=int, default=None, help="Default: the run's.")
@click.option("--lr", type=float, default=None, help="Default: the run's learning rate (constant).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Where the fine-tuned model goes (default MODEL_DIR-ft-DATA).")
def finetune(model_dir, data, epochs, batch_size, lr, seed, out):
    """Continue training MODEL_DIR (a finished `hf-memmit train` run) on clean data; report memorization and
    accuracy before and after, and the training wall time (the paper's unlearning time budget for Extra-FT)."""
    from ..tinymem import FinetuneConfig, finetune_tinymem

    try:
        config = FinetuneConfig(data=data, epochs=epochs, batch_size=batch_size, learning_rate=lr, seed=seed)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    out = out or f"{model_dir.rstrip('/')}-ft-{data}"
    try:
        record = finetune_tinymem(model_dir, config, out)
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from err
    console.print(metrics_table(f"Fine-tuning on {data} ({record['rows']} rows, {epochs:g} epochs)",
                                {"before": record["before"], "after": record["after"]}))
    console.print(f"training {fmt(record['train_seconds'])} s; model and finetune.json in [bold]{out}[/]")
