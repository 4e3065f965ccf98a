"""`hf-memmit`: train TinyMem models, measure and mitigate their memorization from the shell."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .data.config import ARTIFACTS, PROFILES, TASKS

console = Console()


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def metrics_table(title: str, columns: dict[str, dict]) -> Table:
    """One row per metric, one column per model state (e.g. before / after)."""
    table = Table(title=title)
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    keys = [k for k in next(iter(columns.values()))]
    for k in keys:
        table.add_row(k, *[_fmt(c.get(k)) for c in columns.values()])
    return table


def default_run_dir(task, artifact, layers, profile, seed) -> str:
    return f"runs/tinymem-{task}-{artifact}-{layers}l-{profile}-s{seed}"


@click.group()
@click.version_option(package_name="hf_memmit")
def main():
    """Find, measure and remove memorization in causal LMs (TinyMem, unlearning adapters, MemSinks)."""


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
    from .data import TinyMemDataConfig
    from .models import TrainConfig, train_tinymem

    try:
        data = TinyMemDataConfig(task=task, artifact=artifact, profile=profile, seed=seed, faithful=faithful)
        cfg = TrainConfig(n_layer=layers, epochs=epochs, batch_size=batch_size, learning_rate=lr)
        cfg.resolve(data)
        from .models.config import tinymem_config

        tinymem_config(task, layers)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    out = out or default_run_dir(task, artifact, layers, profile, seed)
    started = time.perf_counter()

    def show(record):
        console.print(f"[dim]epoch {record['epoch']:g}[/]  memorized {_fmt(record['memorized'])}  " + "  ".join(
            f"{k} {_fmt(record[k])}" for k in ("accuracy", "perplexity") if k in record))

    try:
        summary = train_tinymem(out, data, cfg, overwrite=overwrite, resume=not no_resume, on_metrics=show)
    except FileExistsError as err:
        raise click.ClickException(str(err)) from err
    final = summary["final_metrics"]
    console.print(metrics_table(f"TinyMem {task}+{artifact}, {layers} layers, {profile} profile", {"final": final}))
    console.print(f"{time.perf_counter() - started:.0f} s; model and tinymem.json in [bold]{out}[/]")


def measure_model(model, dataset, task: str, artifact: str, batch_size: int = 64) -> dict:
    """Memorization of the artifact rows plus accuracy (math) or perplexity (language) of the clean test rows."""
    from .metrics import measure_memorization, perplexity, token_accuracy

    rows = dataset["backdoor_test" if artifact == "backdoor" else "forget"]
    mem = measure_memorization(model, rows, batch_size=batch_size, progress=True)
    out = {"memorized": mem.fraction, "memorized_rows": f"{mem.memorized}/{mem.total}",
           "continues_cleanly": mem.clean_fraction}
    out.update({f"memorized_dup{c}": v["fraction"] for c, v in mem.per_class.items() if len(mem.per_class) > 1})
    if task == "math":
        acc = token_accuracy(model, dataset["test"], pad_token_id=13, batch_size=batch_size)
        out.update(accuracy=acc["average"]["accuracy"], accuracy_no_pad=acc["average"]["accuracy_no_pad"])
    else:
        ppl = perplexity(model, dataset["test"], batch_size=batch_size)
        out.update(perplexity=ppl["corpus"], perplexity_mean_batch_exp=ppl["mean_batch_exp"])
    return out


@main.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--task", type=click.Choice(TASKS), default=None, help="Default: the run's own (tinymem.json).")
@click.option("--artifact", type=click.Choice(ARTIFACTS), default=None)
@click.option("--profile", type=click.Choice(PROFILES), default=None)
@click.option("--seed", type=int, default=None)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--json-out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the JSON result (default MODEL_DIR/memorization.json).")
def measure(model_dir, task, artifact, profile, seed, batch_size, json_out):
    """Measure (k=50, l=50) memorization of a TinyMem artifact set on MODEL_DIR, plus accuracy or perplexity."""
    from transformers import AutoModelForCausalLM

    from .data import TinyMemDataConfig, build_tinymem
    from .models.training import RUN_FILE
    from .utils import atomic_write_json, library_versions

    info_path = Path(model_dir) / RUN_FILE
    base = json.loads(info_path.read_text())["data_config"] if info_path.exists() else {}
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


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
@click.option("--layers", type=int, default=4, show_default=True)
@click.option("--profile", type=click.Choice(PROFILES), default="quick", show_default=True)
@click.option("--overwrite", is_flag=True, help="Retrain even if the demo model exists.")
def demo(out, layers, profile, overwrite):
    """End to end on the embedded default: train a TinyMem math+noise model, then measure its memorization."""
    from .data import TinyMemDataConfig
    from .models import TrainConfig, is_finished, train_tinymem
    from .models.training import load_run

    data = TinyMemDataConfig(task="math", artifact="noise", profile=profile)
    if overwrite or not is_finished(out):
        console.rule("1. train a TinyMem model that memorizes its noise artifacts")
        train_tinymem(out, data, TrainConfig(n_layer=layers), overwrite=overwrite,
                      on_metrics=lambda r: console.print(f"[dim]epoch {r['epoch']:g}[/]  memorized "
                                                         f"{_fmt(r['memorized'])}  accuracy {_fmt(r['accuracy'])}"))
    console.rule("2. measure memorization (k=50, l=50) and accuracy")
    model, dataset = load_run(out)
    before = measure_model(model, dataset, "math", "noise")
    console.print(metrics_table("TinyMem math+noise", {"trained model": before}))


if __name__ == "__main__":
    main()
