"""`hf-memmit unlearn`: fit one of the unlearning methods as a PEFT mask adapter, on a TinyMem run (RUN_DIR) or
on your own model (--model with --forget)."""

from __future__ import annotations

import click

from ..tinymem import run_unlearning
from ..unlearning import method_names
from ..utils import process_state
from .common import (RegistryChoice, console, fmt, metrics_table, one_line_errors, parse_options, quiet_datasets,
                     reports_here)
from .group import main
from .scan import DEVICES, DTYPES


@main.command(name="unlearn")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False), required=False)
@click.option("--model", "model_id", default=None, help="Your own model: a Hub id, a folder or a .gguf file.")
@click.option("--forget", default=None, help="With --model: a scan folder (hf-memmit scan --out) or a records file.")
@click.option("--retain", default=None, help="With --model: records to keep (default: the scanned records with no "
                                             "extractable window).")
@click.option("--eval-data", default=None, help="With --model: held-out records for perplexity before/after.")
@click.option("--eval-block", type=int, default=64, show_default=True,
              help="With --eval-data: perplexity over non-overlapping blocks of this many tokens.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--k", type=int, default=None, help="With --model and a records file as --forget: prompt tokens (32).")
@click.option("--l", "l_", type=int, default=None, help="... and target tokens (32). A scan folder keeps its own.")
@click.option("--method", type=RegistryChoice(method_names), default="balanced_subnet", show_default=True,
              help="A registered unlearning method (hf_memmit.unlearning.method_names()).")
@click.option("--ratio", type=float, default=None,
              help="Fraction masked (default: 0.01 for (balanced_)subnet with --model, else the method's own).")
@click.option("--epochs", type=int, default=None)
@click.option("--max-steps", type=int, default=None)
@click.option("--retain-size", type=int, default=None, help="RUN_DIR: use a random subset of the retain rows.")
@click.option("--set", "sets", multiple=True, help="Any other config field, KEY=VALUE (repeatable).")
@click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True, help="With --model: windows per check.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Adapter directory.")
@one_line_errors
def unlearn_cmd(model_dir, model_id, forget, retain, eval_data, eval_block, text_column, k, l_, method, ratio, epochs, max_steps,
                retain_size, sets, dtype, device, batch_size, out):
    """Unlearn what a model regurgitates into a PEFT mask adapter; prints memorization before and after.

    RUN_DIR: a TinyMem run (its memorized artifact rows). --model M --forget SCAN_OR_FILE: your own model.
    Under `accelerate launch` the processes share the scans and fit Subnet, BalancedSubnet and the loss-based
    methods data-parallel (the adapter equals one process's); the main process saves and prints."""
    options = {k: v for k, v in dict(ratio=ratio, epochs=epochs, max_steps=max_steps).items() if v is not None}
    options.update(parse_options(sets))
    if (model_dir is None) == (model_id is None):
        raise ValueError("give either RUN_DIR (a TinyMem run) or --model with --forget (your own model)")
    state = process_state()
    if model_id is None:
        record = run_unlearning(model_dir, method, out, options, retain_size)
        if not reports_here(state):
            return
        console.print(metrics_table(f"{method} on {model_dir} ({record['seconds']:.1f} s)",
                                    {"before": record["before"], "after": record["after"]}))
    else:
        if forget is None:
            raise ValueError("--model needs --forget: a scan folder (hf-memmit scan --out) or a records file")
        from ..own_model import unlearn_records

        quiet_datasets()
        record = unlearn_records(model_id, forget, retain=retain, eval_data=eval_data, method=method,
                                 options=options, k=k, l=l_, text_column=text_column, eval_block=eval_block, dtype=dtype, device=device,
                                 batch_size=batch_size, out=out)
        if not reports_here(state):
            return
        if record.get("nothing_to_unlearn"):
            console.print(f"nothing to unlearn: no window of the forget records is extractable at "
                          f"(k={record['k']}, l={record['l']})")
            return
        console.print(metrics_table(f"{method} on {model_id} ({record['seconds']:.1f} s)",
                                    {"before": own_model_row(record, "before"),
                                     "after": own_model_row(record, "after")}))
        if record["newly_extractable"]:
            shown = ", ".join(record["newly_extractable"][:5])
            console.print(f"[yellow]{len(record['newly_extractable'])} window(s) not in the forget set became "
                          f"extractable[/] ({shown}{', ...' if len(record['newly_extractable']) > 5 else ''}): "
                          "scan the merged model again and unlearn what it finds")
    if out:
        console.print(f"adapter saved to [bold]{out}[/] (load: PeftModel.from_pretrained(model, {out!r}) after "
                      "`import hf_memmit`)")


def own_model_row(record: dict, when: str) -> dict:
    scan = record[f"scan_{when}"]
    return {"records extractable": f"{scan['records_extractable']}/{scan['records']}",
            "windows extractable": f"{scan['windows_extractable']}/{scan['windows']}",
            "mean token match": fmt(scan["mean_token_match"]),
            "held-out perplexity": fmt(record[f"perplexity_{when}"])}
