"""One unlearning run on a trained TinyMem model, as the CLI, the demo and the benchmarks do it: measure, pick
the forget set (the artifact rows the model memorizes), fit a method's adapter, measure again, save."""

from __future__ import annotations

import dataclasses
import time

from ..metrics import measure_memorization
from ..unlearning import make_config, unlearn
from ..utils import atomic_folder, atomic_write_json, library_versions
from .evaluate import measure_model
from .run_dir import load_run, run_data_config


def forget_set(model, dataset, artifact: str, batch_size: int = 64):
    """The rows to unlearn: the artifact training rows the model currently memorizes (the paper's forget set)."""
    mem = measure_memorization(model, dataset["forget"], batch_size=batch_size)
    return dataset["forget"].select(mem.memorized_indices)


def run_unlearning(model_dir, method: str, out: str | None, options: dict, retain_size: int | None = None,
                   seed: int = 0) -> dict:
    """Measure, unlearn with `method`, measure again, save the adapter: the before/after record."""
    model, dataset = load_run(model_dir)
    data = run_data_config(model_dir)
    task, artifact = data.task, data.artifact
    before = measure_model(model, dataset, task, artifact)
    forget = forget_set(model, dataset, artifact)
    if len(forget) == 0:
        raise ValueError(f"{model_dir}: the model memorizes none of its {artifact} rows; nothing to unlearn "
                         "(the forget set is the memorized artifact rows)")
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
        with atomic_folder(out) as tmp:  # the adapter folder appears whole or not at all
            peft_model.save_pretrained(tmp)
            atomic_write_json(tmp / "unlearning_result.json", record)
    return record
