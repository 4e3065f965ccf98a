"""Pieces every `hf-memmit` command shares: the console, metric tables, run-directory names, option parsing.
The measure/unlearn steps the commands chain together live in `hf_memmit.tinymem`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import click
from rich.console import Console
from rich.table import Table

console = Console()


def fmt(v) -> str:
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
        table.add_row(k, *[fmt(c.get(k)) for c in columns.values()])
    return table


def default_run_dir(task, artifact, layers, profile, seed) -> str:
    return f"runs/tinymem-{task}-{artifact}-{layers}l-{profile}-s{seed}"


def parse_options(pairs) -> dict:
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


class RegistryChoice(click.Choice):
    """A `click.Choice` over a registry's names at the time of parsing, not of import: a method or regularizer
    registered after the CLI was loaded is accepted and listed in --help."""

    def __init__(self, names: Callable[[], Iterable[str]]):
        self.names = names
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self.names())


def one_line_errors(func):
    """Bad input from the shell: `Error: <message>` on one line and exit status 1, no traceback."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ValueError, TypeError, FileNotFoundError, OSError) as err:
            raise click.ClickException(" ".join(str(err).split())) from None

    return wrapper


def quiet_datasets() -> None:
    """The own-model commands show their own bars for the long loops (the scan, the fitting); datasets' bars
    for reading and cutting a records file would only bury them."""
    import datasets

    datasets.disable_progress_bars()


def reports_here(state) -> bool:
    """At the end of a command run under `accelerate launch`: close the process group (every process is past the
    last collective; exiting with gloo's threads alive can abort a process) and say whether this process is the
    one that prints. A single process always prints."""
    if state.num_processes > 1:
        state.destroy_process_group()
    return state.is_main_process
