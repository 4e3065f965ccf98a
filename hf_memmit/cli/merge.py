"""`hf-memmit merge` and `hf-memmit convert-gguf`: plain safetensors checkpoints that load without hf_memmit."""

from __future__ import annotations

import click

from .common import console, one_line_errors
from .group import main


@main.command()
@click.argument("adapter", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder for the merged checkpoint.")
@click.option("--base", default=None, help="The base model (default: the one the adapter records).")
@one_line_errors
def merge(adapter, out, base):
    """Merge ADAPTER into its base model: model.safetensors + tokenizer in OUT, loadable with plain transformers."""
    from ..own_model import merge_adapter

    path = merge_adapter(adapter, out, base=base)
    console.print(f"merged checkpoint in [bold]{path}[/] (AutoModelForCausalLM.from_pretrained({str(path)!r}))")


@main.command(name="convert-gguf")
@click.argument("gguf_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Default: the hf_memmit cache.")
@one_line_errors
def convert_gguf_cmd(gguf_file, out):
    """Dequantize a GGUF causal LM once into a plain safetensors checkpoint folder (cached)."""
    from ..models.gguf import convert_gguf

    console.print(f"converted checkpoint in [bold]{convert_gguf(gguf_file, out)}[/]")
