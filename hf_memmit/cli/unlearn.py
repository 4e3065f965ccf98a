"""`hf-memmit unlearn`: fit one of the 11 unlearning methods as a PEFT mask adapter."""

from __future__ import annotations

import click

from ..unlearning.run import run_unlearning
from .common import console, metrics_table, parse_options
from .group import main


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
    options.update(parse_options(sets))
    try:
        record = run_unlearning(model_dir, method, out, options, retain_size)
    except (ValueError, TypeError) as err:
        raise click.BadParameter(str(err)) from err
    console.print(metrics_table(f"{method} on {model_dir} ({record['seconds']:.1f} s)",
                                {"before": record["before"], "after": record["after"]}))
    if out:
        console.print(f"adapter saved to [bold]{out}[/] (load: PeftModel.from_pretrained(model, {out!r}) after "
                      "`import hf_memmit`)")
