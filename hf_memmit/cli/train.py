"""`hf-memmit train`: train a TinyMem model that memorizes its artifacts."""

from __future__ import annotations

import dataclasses
import time

import click

from ..data.config import ARTIFACTS, PROFILES, TASKS
from .common import console, default_run_dir, fmt, metrics_table
from .group import main

REGULARIZERS = ("none", "spectral_norm", "loss_truncation", "example_tied_dropout")


def regularizer_trainer(name: str, options: dict) -> tuple[type | None, dict, dict]:
    """(Trainer subclass, its kwargs, the record for tinymem.json) of a `--regularizer` choice; `options` hold
    the hyperparameters of that regularizer's config (None: the config's default). Raises ValueError on a bad
    name or value."""
    from ..utils import check_choice

    check_choice("regularizer", name, REGULARIZERS)
    options = {k: v for k, v in options.items() if v is not None}
    if name == "none":
        return None, {}, {"regularizer": "none"}
    if name == "spectral_norm":
        from ..trainers.spectral_norm import SpectralNormConfig as Config
        from ..trainers.spectral_norm import SpectralNormTrainer as cls
        key = "spectral_config"
    elif name == "loss_truncation":
        from ..trainers.loss_truncation import LossTruncationConfig as Config
        from ..trainers.loss_truncation import LossTruncationTrainer as cls
        key = "truncation_config"
    else:
        try:  # built in its own issue; keep the choice wired even where it is absent
            from ..trainers.example_tied_dropout import ExampleTiedDropoutConfig as Config
            from ..trainers.example_tied_dropout import ExampleTiedDropoutTrainer as cls
        except ImportError as err:
            raise ValueError(f"regularizer={name!r} needs hf_memmit.trainers.example_tied_dropout, which this "
                             f"install lacks ({err})") from err
        key = "etd_config"
    config = Config(**options)
    return cls, {key: config}, {"regularizer": name, "regularizer_config": dataclasses.asdict(config)}


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
@click.option("--regularizer", type=click.Choice(REGULARIZERS), default="none", show_default=True,
              help="Train-time mitigation (a Trainer subclass); its options below.")
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
          regularizer, spectral_weight, spectral_penalty, per_head, drop_fraction, truncation_warmup,
          truncation_window, p_gen, p_mem):
    """Train a TinyMem model that memorizes its artifacts, plainly or with a regularizer; resumes an
    interrupted run."""
    from transformers import Trainer

    from ..data import TinyMemDataConfig
    from ..models import TrainConfig, train_tinymem

    try:
        data = TinyMemDataConfig(task=task, artifact=artifact, profile=profile, seed=seed, faithful=faithful)
        cfg = TrainConfig(n_layer=layers, epochs=epochs, batch_size=batch_size, learning_rate=lr)
        cfg.resolve(data)
        from ..models.config import tinymem_config

        tinymem_config(task, layers)
        options = {
            "spectral_norm": {"weight": spectral_weight, "penalty": spectral_penalty, "per_head": per_head},
            "loss_truncation": {"drop_fraction": drop_fraction, "min_count": truncation_warmup,
                                    "buffer_size": truncation_window, "recompute_every": truncation_window},
            "example_tied_dropout": {"p_gen": p_gen, "p_mem": p_mem},
        }.get(regularizer, {})
        trainer_cls, trainer_kwargs, record = regularizer_trainer(regularizer, options)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    out = out or default_run_dir(task, artifact, layers, profile, seed) + (
        f"-{regularizer}" if regularizer != "none" else "")
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
        f", {regularizer}" if regularizer != "none" else "")
    console.print(metrics_table(title, {"final": final}))
    console.print(f"{time.perf_counter() - started:.0f} s; model and tinymem.json in [bold]{out}[/]")
