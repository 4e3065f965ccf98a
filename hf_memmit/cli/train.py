"""`hf-memmit train`: train a TinyMem model that memorizes its artifacts."""

from __future__ import annotations

import time

import click

from ..data.config import ARTIFACTS, PROFILES, TASKS
from .common import console, default_run_dir, fmt, metrics_table
from .group import main


@main.command()
@click.option("--task", type=click.Choice(TASKS), default="math", show_default=True)
@click.option("--artifact", type=click.Choice(ARTIFACTS), default="noise", show_default=True)
@click.option("--layers", type=int, default=4, show_default=True, help="2, 4, 8 or 16 (paper configs).")
@click.option("--profile", type=click.Choice(PROFILES), default="quick", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Run directory (default runs/tinymem-TASK-ARTIFACT-Ll-PROFILE-sSEED).")
@click.option("--epochs", type=float, default=None, help="Override the profile's epochs.")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--faithful", is_flag=True, help="Reproduce the reference code's data quirks.")
@click.option("--overwrite", is_flag=True, help="Replace a finished run in the same directory.")
@click.option("--no-resume", is_flag=True, help="Start over even if checkpoints exist.")
def train(task, artifact, layers, profile, seed, out, epochs, batch_size, lr, faithful, overwrite, no_resume):
    """Train a TinyMem model that memorizes its artifacts; resumes an interrupted run."""
    from ..data import TinyMemDataConfig
    from ..models import TrainConfig, train_tinymem

    try:
        data = TinyMemDataConfig(task=task, artifact=artifact, profile=profile, seed=seed, faithful=faithful)
        cfg = TrainConfig(n_layer=layers, epochs=epochs, batch_size=batch_size, learning_rate=lr)
        cfg.resolve(data)
        from ..models.config import tinymem_config

        tinymem_config(task, layers)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    out = out or default_run_dir(task, artifact, layers, profile, seed)
    started = time.perf_counter()

    def show(record):
        console.print(f"[dim]epoch {record['epoch']:g}[/]  memorized {fmt(record['memorized'])}  " + "  ".join(
            f"{k} {fmt(record[k])}" for k in ("accuracy", "perplexity") if k in record))

    try:
        summary = train_tinymem(out, data, cfg, overwrite=overwrite, resume=not no_resume, on_metrics=show)
    except FileExistsError as err:
        raise click.ClickException(str(err)) from err
    final = summary["final_metrics"]
    console.print(metrics_table(f"TinyMem {task}+{artifact}, {layers} layers, {profile} profile", {"final": final}))
    console.print(f"{time.perf_counter() - started:.0f} s; model and tinymem.json in [bold]{out}[/]")
