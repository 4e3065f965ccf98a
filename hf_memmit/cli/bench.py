"""`hf-memmit bench` and `hf-memmit report`: the paper's comparison of unlearning methods on TinyMem settings
(sweeps, best-run selection, tables, plots)."""

from __future__ import annotations

import click

from .common import RegistryChoice, console
from .group import main


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _ints(name: str, value: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError as err:
        raise click.BadParameter(f"--{name} {value!r}: expected comma-separated integers, e.g. 0,1") from err


@main.command()
@click.option("--suite", type=click.Choice(("quick", "paper")), default="quick", show_default=True,
              help="Data profile and grid: quick fits 2 CPU cores; paper is the paper's sizes and grids.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/bench", show_default=True,
              help="Results folder; running again continues a killed bench.")
@click.option("--settings", "kinds", default="math_noise,math_backdoor,language_noise,language_backdoor",
              show_default=True, help="Comma-separated task_artifact settings.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated training seeds.")
@click.option("--layers", default="4", show_default=True, help="Comma-separated layer counts (2, 4, 8, 16).")
@click.option("--methods", default=None, help="Comma-separated unlearning methods (default: every registered one).")
@click.option("--grid", type=click.Choice(("quick", "paper")), default=None, help="Default: the suite's.")
@click.option("--retain-size", type=int, default=None,
              help="Subsample the retain split to this many rows (default: all of it, as the paper).")
@click.option("--jobs", type=int, default=1, show_default=True, help="Worker processes for the sweeps.")
@click.option("--extra-ft-epochs", type=float, default=5.0, show_default=True,
              help="Epochs of the Extra fine-tuning run that sets the time budget; its seconds are scaled to the "
                   "paper's 5 epochs.")
def bench(suite, out, kinds, seeds, layers, methods, grid, retain_size, jobs, extra_ft_epochs):
    """Train each setting's TinyMem model, time Extra fine-tuning, sweep every unlearning method over its grid,
    then write the report (tables, JSON, plots) into OUT."""
    from ..bench import run_bench, suite_settings, write_report
    from ..unlearning import method_names

    chosen = _csv(methods) if methods else method_names()
    for m in chosen:
        RegistryChoice(method_names).convert(m, None, None)
    if jobs < 1 or (retain_size is not None and retain_size < 1) or extra_ft_epochs <= 0:
        raise click.BadParameter(f"--jobs {jobs}, --retain-size {retain_size}, --extra-ft-epochs {extra_ft_epochs}: "
                                 "allowed: jobs >= 1, retain size >= 1, epochs > 0")
    try:
        settings = suite_settings(suite, _csv(kinds), _ints("seeds", seeds), _ints("layers", layers))
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    run_bench(out, settings, chosen, grid or suite, retain_size, jobs, extra_ft_epochs, log=console.print)
    report = write_report(out)
    console.print(f"report: [bold]{out}/report.md[/] ({len(report['plots'])} plots in {out}/plots)")


@main.command()
@click.argument("results_dir", type=click.Path(file_okay=False))
def report(results_dir):
    """Write RESULTS_DIR/report.md, report.json and plots/*.png from a bench's results (best run per method by
    the paper's selection, the paper's numbers beside)."""
    from ..bench import write_report

    try:
        out = write_report(results_dir)
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from err
    for table in out["tables"]:
        console.print(f"{table['group']}: best trade-off {table['winner']}")
    console.print(f"report: [bold]{results_dir}/report.md[/] ({len(out['plots'])} plots)")
