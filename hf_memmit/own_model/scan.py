"""Scan your own causal LM for the records it regurgitates: load the model, cut the records into (k, l)
windows, run the one (k, l) check on every window, write the per-record results."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..data.records import load_records
from ..metrics.scan import ScanResult, scan_records
from ..models import load_causal_lm
from ..utils import process_state


def resolve_model(model, tokenizer=None, *, dtype: str = "auto", device: str = "auto", **placement):
    """(model, tokenizer) from a Hub id / local folder / .gguf path (`placement`: `load_causal_lm`'s
    device_map, max_memory, offload_folder), or from an already loaded model (then the tokenizer must be given)."""
    if isinstance(model, (str, Path)):
        return load_causal_lm(str(model), dtype=dtype, device=device, **placement)
    if tokenizer is None:
        raise ValueError(f"a loaded {type(model).__name__} needs its tokenizer; allowed: tokenizer=<the model's "
                         "tokenizer>, or pass the model as a Hub id, a folder or a .gguf path")
    return model, tokenizer


def scan_model(model, data, *, tokenizer=None, k: int = 32, l: int = 32, stride: int | None = None,
               text_column: str = "text", add_special_tokens: bool | None = None, dtype: str = "auto",
               device: str = "auto", batch_size: int = 32, out: str | Path | None = None,
               progress: bool = True, accelerator=None, fp32: bool | str = True, device_map: str | None = None,
               max_memory: dict | None = None, offload_folder: str | Path | None = None) -> ScanResult:
    """Which of `data`'s records does `model` regurgitate? A record is extractable when greedy decoding from
    the k tokens of one of its windows reproduces the next l tokens exactly (Carlini et al., 2023,
    "Quantifying memorization across neural language models").

    Args:
        model: a Hub id, a local folder, a `.gguf` file, or a loaded causal LM (with `tokenizer=`).
        data: a JSONL/CSV/Parquet/text file of records, a `datasets.Dataset`/`DatasetDict` with a text column
            (`text_column`) or an `input_ids` column.
        k, l, stride: prompt and target lengths in tokens; stride between window starts (default k + l,
            non-overlapping; 1 checks every offset).
        out: a folder for records.jsonl, windows.jsonl, summary.json and summary.md (written atomically). While
            the scan runs, finished shards of windows are kept in `out/shards`, so a killed scan started again
            with the same arguments continues where it stopped; the folder is removed once the results are written.
        fp32: the precision of the check on half-precision weights: True (every weight upcast for the check),
            "head" (only the final norm and output embedding in float32), False (the model's dtype); see
            `hf_memmit.metrics.greedy`.
        accelerator: an `accelerate.Accelerator` or `PartialState`; by default a launch is detected
            (`accelerate launch -m hf_memmit.cli scan ...` runs one process per device, each on its share of the
            windows; the main process writes the results).
        device_map, max_memory, offload_folder: a model larger than one device, in one process: its layers spread
            over the GPUs, CPU memory and disk by Accelerate (`load_causal_lm`). With half-precision weights,
            `fp32="head"` keeps the check's float32 copy to the output embedding instead of every weight.
    """
    records = load_records(data, text_column=text_column)  # bad input fails before the model loads
    state = accelerator if accelerator is not None else process_state()
    placement = {"device_map": device_map, "max_memory": max_memory, "offload_folder": offload_folder}
    if device_map is not None and state.num_processes > 1:
        raise ValueError(f"device_map={device_map!r} spreads one model over the devices, in one process; under "
                         f"accelerate launch ({state.num_processes} processes) each process holds a whole model on "
                         "its own device; allowed: one of the two")
    if state.num_processes > 1 and isinstance(model, (str, Path)) and state.device.type != "cpu":
        model, tokenizer = resolve_model(model, tokenizer, dtype=dtype, device="cpu")  # then to this rank's GPU
        model.to(state.device)
    else:
        model, tokenizer = resolve_model(model, tokenizer, dtype=dtype, device=device,
                                         **{k: v for k, v in placement.items() if v is not None})
    shards = Path(out) / "shards" if out is not None else None
    result = scan_records(model, tokenizer, records, k=k, l=l, stride=stride, add_special_tokens=add_special_tokens,
                          batch_size=batch_size, fp32=fp32, progress=progress, state=state, shard_dir=shards)
    if out is not None and state.is_main_process:
        result.save(out)
        shutil.rmtree(shards, ignore_errors=True)
    state.wait_for_everyone()
    return result
