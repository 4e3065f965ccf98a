"""`hf-memmit scan`: which of your records does your model regurgitate?"""

from __future__ import annotations

import click
from rich.table import Table

from ..models import DEVICE_MAPS
from ..utils import process_state
from .common import console, one_line_errors, quiet_datasets, reports_here
from .group import main

DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
CHECK_PRECISIONS = {"fp32": True, "head": "head", "model": False}  # --check-precision -> greedy_match's fp32


def model_options(func):
    """--model/--dtype/--device/--batch-size, shared by the own-model commands."""
    for option in reversed((
        click.option("--model", "model_id", required=True,
                     help="A Hub id, a local model folder, or a .gguf file."),
        click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True,
                     help="auto: float32 on CPU, the checkpoint's dtype on CUDA."),
        click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True),
        click.option("--batch-size", type=int, default=32, show_default=True, help="Windows per forward pass."),
    )):
        func = option(func)
    return func


def top_table(result, n: int) -> Table:
    table = Table(title=f"most extractable records (k={result.k}, l={result.l})")
    for column in ("record", "extractable windows", "longest span", "prompt", "model's continuation"):
        table.add_column(column, overflow="fold")
    for rec in result.top_records(n):
        table.add_row(str(rec["record_id"]), f"{rec['extractable_windows']}/{rec['windows']}",
                      str(rec.get("longest_span_tokens", 0)), repr(rec.get("prompt_text", "")),
                      repr(rec.get("continuation_text", "")))
    return table


@main.command()
@model_options
@click.option("--data", required=True, help="Records: a .jsonl/.json/.csv/.parquet/.txt file.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--k", type=int, default=32, show_default=True, help="Prompt tokens.")
@click.option("--l", "l_", type=int, default=32, show_default=True, help="Target tokens that must be reproduced.")
@click.option("--stride", type=int, default=None, help="Tokens between window starts (default k + l; 1 = every offset).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder for the results.")
@click.option("--top", type=int, default=10, show_default=True, help="Records shown in the table.")
@click.option("--device-map", type=click.Choice(DEVICE_MAPS), default=None,
              help="A model larger than one device (one process): Accelerate spreads its layers over the GPUs, CPU "
                   "memory and disk (--max-memory, --offload-folder).")
@click.option("--max-memory", multiple=True, help="With --device-map: DEVICE=SIZE, e.g. 0=40GiB or cpu=100GiB "
                                                  "(repeatable).")
@click.option("--offload-folder", type=click.Path(file_okay=False), default=None,
              help="With --device-map: where layers that fit nowhere else are kept.")
@click.option("--check-precision", type=click.Choice(tuple(CHECK_PRECISIONS)), default="fp32", show_default=True,
              help="Half-precision models: fp32 upcasts every weight for the check, head only the final norm and "
                   "output embedding, model keeps the model's dtype.")
@one_line_errors
def scan(model_id, dtype, device, batch_size, data, text_column, k, l_, stride, out, top, device_map, max_memory,
         offload_folder, check_precision):
    """Scan MODEL for the records of DATA it reproduces verbatim: per-record JSONL, summary JSON and Markdown."""
    from ..own_model import scan_model

    quiet_datasets()
    state = process_state()  # under `accelerate launch` the processes share the windows; the main one reports
    result = scan_model(model_id, data, k=k, l=l_, stride=stride, text_column=text_column, dtype=dtype,
                        device=device, batch_size=batch_size, out=out, accelerator=state,
                        fp32=CHECK_PRECISIONS[check_precision], device_map=device_map,
                        max_memory=parse_max_memory(max_memory), offload_folder=offload_folder)
    if not reports_here(state):
        return
    s = result.summary()
    console.print(top_table(result, top))
    console.print(f"{s['records_extractable']}/{s['records']} records extractable "
                  f"({s['windows_extractable']}/{s['windows']} windows, mean token match "
                  f"{s['mean_token_match']:.3f}; {s['short_records']} records shorter than k + l skipped)")
    console.print(f"wrote {out}/records.jsonl, summary.json, summary.md")


def parse_max_memory(pairs) -> dict | None:
    """--max-memory DEVICE=SIZE pairs -> Accelerate's max_memory ({0: "40GiB", "cpu": "100GiB"})."""
    limits = {}
    for pair in pairs:
        device, sep, size = pair.partition("=")
        if not sep or not size or not (device.isdigit() or device in ("cpu", "mps")):
            raise ValueError(f"--max-memory {pair!r}; allowed: DEVICE=SIZE with DEVICE a GPU index, cpu or mps, "
                             "e.g. 0=40GiB")
        limits[int(device) if device.isdigit() else device] = size
    return limits or None
