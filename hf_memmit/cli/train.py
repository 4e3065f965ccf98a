"""`hf-memmit train`: train a TinyMem model that memorizes its artifacts."""

from __future__ import annotations

import time

import click

from ..data.config import ARTIFACTS, PROFILES, TASKS
from ..trainers.registry import NONE, regularizer_names, regularizer_trainer
from .common import RegistryChoice, console, default_run_dir, fmt, metrics_table, parse_options
from .group import main

# the old per-regularizer options -> config fields; `--set KEY=VALUE` reaches any field of any regularizer
LEGACY_OPTIONS = {
    "spectral_norm": {"weight": "spectral_weight", "penalty": "spectral_penalty", "per_head": "per_head"},
    "loss_truncation": {"drop_fraction": "drop_fraction", "min_count": "truncation_warmup",
                        "buffer_size": "truncation_window", "recompute_every": "truncation_window"},
    "example_tied_dropout": {"p_gen": "p_gen", "p_mem": "p_mem"},
}


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
@click.option("--regularizer", type=RegistryChoice(regularizer_names), default=NONE, show_default=True,
              help="Train-time mitigation (a registered Trainer subclass); its config via --set or the options below.")
@click.option("--set", "sets", multiple=True, help="A field of the regularizer's config, KEY=VALUE (repeatable).")
@click.option("--spectral-weight", type=float, default=None, help="spectral_norm: lambda (default 0.01).")
@click.option("--spectral-penalty", type=click.Choice(("sigma_sq", "sigma")), default=None,
              help="spectral_norm: sigma^2 (the paper, default) or sigma (TinyMem's code).")
@click.option("--per-head/--whole-matrix", default=None, help="spectral_norm: one sigma per attention head.")
@click.option("--drop-fraction", type=float, default=None, help="loss_truncation: dropped share, [0, 1) (0.1).")
@click.option("--truncation-warmup", type=int, default=None,
              help="loss_truncation: sequences before the first drop (10000).")
@click.option("--truncation-window", type=int, default=None,
              help="loss_truncation: losses in the quantile buffer and sequences between refreshes (10000).")
@click.option("--p-gen", type=float, default=None, help="example_tied_dropout: general units share, (0, 1].")
@click.option("--p-mem", type=float, default=None, help="example_tied_dropout: per-example units share, (0, 1].")
def train(task, artifact, layers, profile, seed, out, epochs, batch_size, lr, faithful, overwrite, no_resume,
          regularizer, sets, spectral_weight, spectral_penalty, per_head, drop_fraction, truncation_warmup,
          truncation_window, p_gen, p_mem):
    """Train a TinyMem model that memorizes its artifacts, plainly or with a regularizer; resumes an
    interrupted run."""
    from transformers import Trainer

    from ..data import TinyMemDataConfig
    from ..tinymem import TrainConfig, train_tinymem

    try:
        data = TinyMemDataConfig(task=task, artifact=artifact, profile=profile, seed=seed, faithful=faithful)
        cfg = TrainConfig(n_layer=layers, epochs=epochs, batch_size=batch_size, learning_rate=lr)
        cfg.resolve(data)
        from ..models.config import tinymem_config

        tinymem_config(task, layers)
        legacy = dict(spectral_weight=spectral_weight, spectral_penalty=spectral_penalty, per_head=per_head,
                      drop_fraction=drop_fraction, truncation_warmup=truncation_warmup,
                      truncation_window=truncation_window, p_gen=p_gen, p_mem=p_mem)
        options = {field: legacy[option] for field, option in LEGACY_OPTIONS.get(regularizer, {}).items()}
        options.update(parse_options(sets))
        trainer_cls, trainer_kwargs, record = regularizer_trainer(regularizer, options)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    out = out or default_run_dir(task, artifact, layers, profile, seed) + (
        f"-{regularizer}" if regularizer != NONE else "")
    started = time.perf_counter()

    def show(record):
        console.print(f"[dim]epoch {record['epoch']:g}[/]  memorized {fmt(record['memorized'])}  " + "  ".join(
            f"{k} {fmt(record[k])}" for k in ("accuracy", "perplexity") if k in record))

    try:
        summary = train_tinymem(out, data, cfg, overwrite=overwrite, resume=not no_resume, on_metrics=show,
                                trainer_cls=trainer_cls or Trainer, trainer_kwargs=trainer_kwargs,
                                extra_summary=record)
    except FileExistsError as err:
        raise click.ClickException(str(err)) from err
    final = summary["final_metrics"]
    title = f"TinyMem {task}+{artifact}, {layers} layers, {profile} profile" + (
        f", {regularizer}" if regularizer != NONE else "")
    console.print(metrics_table(title, {"final": final}))
    console.print(f"{time.perf_counter() - started:.0f} s; model and tinymem.json in [bold]{out}[/]")
