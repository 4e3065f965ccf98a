"""Remove what a scan found: fit an unlearning adapter on the extractable windows, measure before and after
(extractable records, held-out perplexity), save the adapter with its record."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ..data.records import load_records, make_windows, tokenize_records
from ..metrics import perplexity
from ..metrics.scan import ScanResult, scan_records, scan_windows
from ..metrics.shards import ThisProcessOnly
from ..models import model_fingerprint, weight_sums
from ..unlearning import METHODS, LossMethodConfig, get_method, make_config, unlearn
from ..unlearning.data import as_rows, check_disjoint
from ..unlearning.parallel import is_deepspeed
from ..utils import atomic_folder, atomic_write_json, library_versions, process_state
from .scan import resolve_model

RESULT_FILE = "unlearning_result.json"
LIVE_OBJECTS = ("peft_model", "scan_after_result")  # returned to the caller, not written to the record

# Defaults for a forget set of any size: schedule by optimizer steps and stop at the first step after which no
# forget window is extractable, instead of a number of epochs sized for TinyMem. Checking every step matters on
# a real LM: on SmolLM2-135M (64 canaries) ratio 0.01 checked every step stopped after 5-7 steps with held-out
# perplexity lower than before, while checks every 10 steps let the mask overshoot (perplexity +96% to +765%).
# A check looks at 64 sampled forget windows first, so it stays cheap on 10,000 records. A 1% mask per tensor:
# the initial mask is random (Ramanujan et al., 2020), and a random 5% of SmolLM2's MLP weights costs far more.
STEP_SCHEDULED = {"epochs": None, "max_steps": 300, "forget_check_every": 1, "forget_check_rows": 64,
                  "batch_size": 8, "ratio": 0.01}
# The loss-based LoRA methods get the same schedule and check (they have no ratio), at AdamW lr 1e-3: LoRA's B
# starts at zero, and at 1e-4 gradient ascent still left SmolLM2 canaries extractable after 19 steps (190 s).
LORA_STEP_SCHEDULED = {**{k: v for k, v in STEP_SCHEDULED.items() if k != "ratio"}, "lr": 1e-3}
METHOD_DEFAULTS = {"subnet": STEP_SCHEDULED, "balanced_subnet": STEP_SCHEDULED,
                   **{name: LORA_STEP_SCHEDULED for name, m in METHODS.items()
                      if issubclass(m.config_class, LossMethodConfig)}}


def config_for(method: str, options: dict | None = None):
    """The method's config with the own-model defaults, overridden by `options` (e.g. {"ratio": 0.1})."""
    get_method(method)  # unknown names fail here, listing the allowed ones
    return make_config(method, **{**METHOD_DEFAULTS.get(method, {}), **(options or {})})


def windows_of(data, tokenizer, k: int, l: int, *, text_column: str = "text", stride: int | None = None):
    """All (k, l) windows of a records source, with `id`s "record@offset" and `prompt_length` k."""
    records = tokenize_records(load_records(data, text_column=text_column), tokenizer)
    windows, stats = make_windows(records, k=k, l=l, stride=stride)
    windows = windows.map(lambda w: {"id": f"{w['record_id']}@{w['offset']}", "prompt_length": k})
    return windows, stats


def held_out_perplexity(model, rows, batch_size: int = 8) -> float | None:
    return None if rows is None else perplexity(model, rows, batch_size=batch_size)["corpus"]


def clean_records_windows(scan: ScanResult):
    """The default retain set: the windows of the scanned records that have no extractable window at all. A
    memorized record's other windows stay out: retaining them would train the model towards that record."""
    leaked = {r["record_id"] for r in scan.records() if r["extractable"]}
    windows = scan.non_extractable_dataset()
    return windows.filter(lambda w: w["record_id"] not in leaked)


def extractable_changes(before: ScanResult, after: ScanResult) -> dict:
    """Which windows the unlearning left or made extractable, as "record_id@offset": `still_extractable` (forget
    windows not removed) and `newly_extractable` (windows that were not extractable before). Windows outside the
    forget set can cross into extractable: pushing the forget windows away moves their neighbours, and the retain
    term lowers the loss of the retain windows (on a tiny model, enough to make some of them exact)."""
    pairs = list(zip(before.window_ids(), before.windows["extractable"], after.windows["extractable"]))
    return {"still_extractable": [i for i, was, now in pairs if was and now],
            "newly_extractable": [i for i, was, now in pairs if now and not was]}


def load_forget(forget, model, tokenizer, *, k, l, stride, text_column, batch_size, progress) -> ScanResult:
    """A saved scan folder, or a records source scanned now."""
    if isinstance(forget, (str, Path)) and Path(forget).is_dir() and (Path(forget) / "summary.json").exists():
        return ScanResult.load(forget, tokenizer=tokenizer)
    records = load_records(forget, text_column=text_column)
    return scan_records(model, tokenizer, records, k=k or 32, l=l or 32, stride=stride, batch_size=batch_size,
                        progress=progress)


def unlearn_records(model, forget, *, tokenizer=None, retain=None, eval_data=None, method: str = "balanced_subnet",
                    options: dict | None = None, k: int | None = None, l: int | None = None,
                    stride: int | None = None, text_column: str = "text", eval_block: int = 64,
                    dtype: str = "auto", device: str = "auto", batch_size: int = 32, out: str | Path | None = None,
                    progress: bool = True) -> dict:
    """Unlearn the windows of `forget` that `model` regurgitates; return (and with `out`, save next to the
    adapter) the before/after record.

    Args:
        model: a Hub id, a local folder, a `.gguf` file, or a loaded causal LM (with `tokenizer=`).
        forget: a scan folder (`hf-memmit scan --out`), or records to scan now with (k, l) (default 32, 32).
        retain: records whose windows must keep working, for the methods that need a retain set
            (BalancedSubnet, Greedy). Default: the windows of the scanned records that have no extractable
            window (a memorized record's other windows are left out of both sets).
        eval_data: held-out records; their perplexity (non-overlapping blocks of `eval_block` tokens) is
            measured before and after. None: not measured.
        method, options: the unlearning method and its config fields (over the own-model defaults,
            `METHOD_DEFAULTS`: step-scheduled with a stopping check for Subnet, BalancedSubnet and the loss-based methods).
    Returns a dict with `nothing_to_unlearn` True (and no adapter) when the scan found nothing extractable.
    """
    config = config_for(method, options)  # bad options fail before the model loads
    model, tokenizer = resolve_model(model, tokenizer, dtype=dtype, device=device)
    scan = load_forget(forget, model, tokenizer, k=k, l=l, stride=stride, text_column=text_column,
                       batch_size=batch_size, progress=progress)
    k, l = scan.k, scan.l
    forget_rows = scan.to_dataset()
    record = {"model": getattr(model.config, "_name_or_path", None), "method": method, "k": k, "l": l,
              "scan_before": scan.summary(), "versions": library_versions()}
    if len(forget_rows) == 0:
        return {**record, "nothing_to_unlearn": True}

    if retain is not None:
        retain_rows, _ = windows_of(retain, tokenizer, k, l, text_column=text_column)
        # by tokens: ids ("record@offset") of two files can collide without sharing text
        check_disjoint(as_rows(forget_rows, "forget"), as_rows(retain_rows, "retain"), by="tokens")
    else:
        retain_rows = clean_records_windows(scan)
    retain_rows = retain_rows.remove_columns("id")  # so that `unlearn` compares tokens too, not ids
    needs_retain = get_method(method).needs_retain
    if needs_retain and len(retain_rows) == 0:
        raise ValueError(f"method {method!r} needs a retain set and the scan has no non-extractable window to use; "
                         "allowed: pass retain=<records the model should keep> (--retain FILE)")
    eval_rows = None
    if eval_data is not None:
        eval_rows, _ = windows_of(eval_data, tokenizer, 1, eval_block - 1, text_column=text_column)

    ppl_before = held_out_perplexity(model, eval_rows)
    # taken before peft wraps the model's layers (that changes its state dict)
    base = {"base_fingerprint": model_fingerprint(model), "base_weight_sums": weight_sums(model)}
    started = time.perf_counter()
    peft_model = unlearn(model, config, forget_rows, retain_rows if needs_retain else None, progress=progress)
    seconds = time.perf_counter() - started
    # under DeepSpeed the model stays partitioned: every process runs the same forward passes, so all scan all
    lockstep = ThisProcessOnly() if is_deepspeed(process_state()) else None
    after = scan_windows(peft_model, scan.windows, tokenizer=tokenizer, batch_size=batch_size, progress=progress,
                         state=lockstep)
    after.stride, after.stats = scan.stride, scan.stats
    record.update({
        "config": dataclasses.asdict(config), "forget_windows": len(forget_rows),
        "retain_windows": len(retain_rows) if needs_retain else 0, "seconds": seconds,
        "scan_after": after.summary(), **extractable_changes(scan, after), "perplexity_before": ppl_before,
        "perplexity_after": held_out_perplexity(peft_model, eval_rows),
        "eval_blocks": 0 if eval_rows is None else len(eval_rows),
        "stopping": getattr(peft_model, "unlearning_log", None),
        **base,
    })
    if out is not None and process_state().is_main_process:  # under `accelerate launch`: written once
        save_adapter(peft_model, tokenizer, record, out)
    process_state().wait_for_everyone()
    record["peft_model"], record["scan_after_result"] = peft_model, after
    return record


def save_adapter(peft_model, tokenizer, record: dict, out) -> None:
    """The adapter, the tokenizer and the record appear in `out` whole or not at all."""
    with atomic_folder(out) as tmp:
        peft_model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / RESULT_FILE, {k: v for k, v in record.items() if k not in LIVE_OBJECTS})
