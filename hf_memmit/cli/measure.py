"""`hf-memmit measure`: memorization, accuracy and perplexity of a TinyMem model."""

from __future__ import annotations

from pathlib import Path

import click

from ..data.config import ARTIFACTS, PROFILES, TASKS
from ..tinymem import RUN_FILE, measure_model, read_run_info
from .common import console, metrics_table, one_line_errors
from .group import main


@main.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--task", type=click.Choice(TASKS), default=None, help="Default: the run's own (tinymem.json).")
@click.option("--artifact", type=click.Choice(ARTIFACTS), default=None)
@click.option("--profile", type=click.Choice(PROFILES), default=None)
@click.option("--seed", type=int, default=None)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--json-out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the JSON result (default MODEL_DIR/memorization.json).")
@one_line_errors
def measure(model_dir, task, artifact, profile, seed, batch_size, json_out):
    """Measure (k=50, l=50) memorization of a TinyMem artifact set on MODEL_DIR, plus accuracy or perplexity."""
    from transformers import AutoModelForCausalLM

    from ..data import TinyMemDataConfig, build_tinymem
    from ..utils import atomic_write_json, library_versions

    base = read_run_info(model_dir)["data_config"] if (Path(model_dir) / RUN_FILE).exists() else {}
    given = {k: v for k, v in dict(task=task, artifact=artifact, profile=profile, seed=seed).items() if v is not None}
    # the run's own data config, unless the options ask for a different dataset
    same = all(base.get(k) == v for k, v in given.items())
    try:
        data = TinyMemDataConfig.from_dict(base) if base and same else TinyMemDataConfig(**given)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    result = measure_model(model, build_tinymem(data), data.task, data.artifact, batch_size)
    console.print(metrics_table(f"{model_dir}: {data.task}+{data.artifact} ({data.profile}, seed {data.seed})",
                                {"measured": result}))
    out = json_out or str(Path(model_dir) / "memorization.json")
    atomic_write_json(out, {"model": str(model_dir), "data_config": data.to_dict(), "metrics": result,
                            "versions": library_versions()})
    console.print(f"wrote {out}")
