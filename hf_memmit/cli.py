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
# BalancedSubnet settings of the demo (see the closing notes of the unlearning issue for how they were chosen)
DEMO_UNLEARNING = {"ratio": 0.1, "epochs": 3}


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
    """`evaluate_tinymem`'s numbers, arranged for a table: counts as "memorized/qualifying", per-class rows
    only when there are several classes."""
    from .models.training import evaluate_tinymem

    m = evaluate_tinymem(model, dataset, task, artifact, batch_size, progress=True)
    out = {"memorized": m["memorized"], "memorized_rows": f"{m['memorized_count']}/{m['qualifying']}",
           "continues_cleanly": m["clean_continuation"]}
    dup = {k: v for k, v in m.items() if k.startswith("memorized_dup")}
    out.update(dup if len(dup) > 1 else {})
    keys = ("accuracy", "accuracy_no_pad") if task == "math" else ("perplexity", "perplexity_mean_batch_exp")
    out.update({k: m[k] for k in keys})
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


def forget_set(model, dataset, artifact: str, batch_size: int = 64):
    """The rows to unlearn: the artifact training rows the model currently memorizes (the paper's forget set)."""
    from .metrics import measure_memorization

    mem = measure_memorization(model, dataset["forget"], batch_size=batch_size)
    return dataset["forget"].select(mem.memorized_indices)


def run_unlearning(model_dir, method: str, out: str | None, options: dict, retain_size: int | None = None,
                   seed: int = 0) -> dict:
    """Measure, unlearn with `method`, measure again, save the adapter: the before/after record."""
    import dataclasses
    import shutil

    from .models.training import load_run
    from .unlearning import make_config, unlearn
    from .utils import atomic_write_json, library_versions

    model, dataset = load_run(model_dir)
    info = json.loads((Path(model_dir) / "tinymem.json").read_text())["data_config"]
    task, artifact = info["task"], info["artifact"]
    before = measure_model(model, dataset, task, artifact)
    forget = forget_set(model, dataset, artifact)
    if len(forget) == 0:
        raise click.ClickException(f"{model_dir}: the model memorizes none of its {artifact} rows; nothing to unlearn")
    retain = dataset["retain"]
    if retain_size is not None and retain_size < len(retain):
        retain = retain.shuffle(seed=seed).select(range(retain_size))
    config = make_config(method, **options)
    started = time.perf_counter()
    peft_model = unlearn(model, config, forget, retain)
    seconds = time.perf_counter() - started
    after = measure_model(peft_model, dataset, task, artifact)
    record = {"model": str(model_dir), "method": method, "config": dataclasses.asdict(config),
              "forget_rows": len(forget), "retain_rows": len(retain), "seconds": seconds,
              "before": before, "after": after, "versions": library_versions()}
    if out:
        tmp = Path(str(out) + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        peft_model.save_pretrained(tmp)
        atomic_write_json(tmp / "unlearning_result.json", record)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)  # the adapter folder appears whole or not at all
    return record


def _parse_options(pairs) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"--set {pair!r}: expected KEY=VALUE, e.g. --set loss_weight=0.7")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@main.command(name="unlearn")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--method", default="balanced_subnet", show_default=True,
              help="greedy, sou, durable, durable_agg, subnet, balanced_subnet, zero, act, slim, hc, ig.")
@click.option("--ratio", type=float, default=None, help="Fraction masked (the method's own default if unset).")
@click.option("--epochs", type=int, default=None)
@click.option("--max-steps", type=int, default=None)
@click.option("--retain-size", type=int, default=None, help="Use a random subset of the retain rows.")
@click.option("--set", "sets", multiple=True, help="Any other config field, KEY=VALUE (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Adapter directory.")
def unlearn_cmd(model_dir, method, ratio, epochs, max_steps, retain_size, sets, out):
    """Unlearn MODEL_DIR's memorized artifacts into a PEFT mask adapter; prints memorization before and after."""
    options = {k: v for k, v in dict(ratio=ratio, epochs=epochs, max_steps=max_steps).items() if v is not None}
    options.update(_parse_options(sets))
    try:
        record = run_unlearning(model_dir, method, out, options, retain_size)
    except (ValueError, TypeError) as err:
        raise click.BadParameter(str(err)) from err
    console.print(metrics_table(f"{method} on {model_dir} ({record['seconds']:.1f} s)",
                                {"before": record["before"], "after": record["after"]}))
    if out:
        console.print(f"adapter saved to [bold]{out}[/] (load: PeftModel.from_pretrained(model, {out!r}) after "
                      "`import hf_memmit`)")


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
@click.option("--layers", type=int, default=4, show_default=True)
@click.option("--profile", type=click.Choice(PROFILES), default="quick", show_default=True)
@click.option("--overwrite", is_flag=True, help="Retrain even if the demo model exists.")
def demo(out, layers, profile, overwrite):
    """End to end on the embedded default: train a TinyMem math+noise model, measure its memorization, unlearn it
    with BalancedSubnet, measure again and save the adapter."""
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
    console.rule("3. unlearn the memorized rows with BalancedSubnet, measure again, save the adapter")
    record = run_unlearning(out, "balanced_subnet", str(Path(out) / "balanced_subnet"), DEMO_UNLEARNING)
    console.print(metrics_table(f"BalancedSubnet ({record['seconds']:.1f} s, {record['forget_rows']} forget rows)",
                                {"before": record["before"], "after": record["after"]}))
    console.print(f"adapter: {Path(out) / 'balanced_subnet'}")


if __name__ == "__main__":
    main()
