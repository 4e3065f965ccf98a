"""One unlearning run on a trained TinyMem model, as the CLI, the demo and the bench do it: measure, pick the
forget set (the artifact rows the model memorizes), fit a method's adapter, measure again, save.

`prepare_unlearning` does the per-model part once (data, the unedited model's numbers, forget and retain rows)
so that a sweep fits many methods on one model without measuring it again; `unlearn_prepared` is one run."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from ..metrics import measure_memorization
from ..unlearning import get_method, make_config, unlearn
from ..utils import atomic_folder, atomic_write_json, library_versions, process_state
from .evaluate import measure_model
from .run_dir import load_run, run_data_config


def forget_set(model, dataset, artifact: str, batch_size: int = 64):
    """The rows to unlearn: the artifact training rows the model currently memorizes (the paper's forget set)."""
    mem = measure_memorization(model, dataset["forget"], batch_size=batch_size)
    return dataset["forget"].select(mem.memorized_indices)


@dataclass
class UnlearningSetup:
    """What every unlearning run on one TinyMem model shares: its data, the unedited model's numbers, and the
    forget and retain rows."""

    run_dir: str
    task: str
    artifact: str
    prompt_length: int
    dataset: object
    before: dict
    forget: object
    retain: object

    def fresh_model(self):
        """The unedited model, loaded again (a fitted adapter wraps the model it is given)."""
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(self.run_dir)


def prepare_unlearning(model_dir, retain_size: int | None = None, seed: int = 0) -> UnlearningSetup:
    """Measure the run's model and pick its forget set (the memorized artifact rows) and retain set (the whole
    retain split, or a `retain_size` sample of it drawn with `seed`)."""
    model, dataset = load_run(model_dir)
    data = run_data_config(model_dir)
    before = measure_model(model, dataset, data.task, data.artifact)
    forget = forget_set(model, dataset, data.artifact)
    if len(forget) == 0:
        raise ValueError(f"{model_dir}: the model memorizes none of its {data.artifact} rows; nothing to unlearn "
                         "(the forget set is the memorized artifact rows)")
    retain = dataset["retain"]
    if retain_size is not None and retain_size < len(retain):
        retain = retain.shuffle(seed=seed).select(range(retain_size))
    return UnlearningSetup(str(model_dir), data.task, data.artifact, data.prompt_length, dataset, before, forget,
                           retain)


def unlearn_prepared(setup: UnlearningSetup, method: str, options: dict, out: str | Path | None = None,
                     model=None) -> dict:
    """Fit `method` with `options` on the setup's unedited model (or `model`), measure it, optionally save the
    adapter (with the record) to `out`: the before/after record."""
    config = make_config(method, **options)
    model = setup.fresh_model() if model is None else model
    started = time.perf_counter()
    retain = setup.retain if get_method(method).needs_retain else None  # the others would only warn
    peft_model = unlearn(model, config, setup.forget, retain)
    seconds = time.perf_counter() - started
    after = measure_model(peft_model, setup.dataset, setup.task, setup.artifact)
    record = {"model": setup.run_dir, "method": method, "config": dataclasses.asdict(config),
              "forget_rows": len(setup.forget), "retain_rows": 0 if retain is None else len(retain),
              "seconds": seconds,
              "before": setup.before, "after": after, "versions": library_versions()}
    state = process_state()
    if out and state.is_main_process:  # under `accelerate launch`: written once
        with atomic_folder(out) as tmp:  # the adapter folder appears whole or not at all
            peft_model.save_pretrained(tmp)
            atomic_write_json(tmp / "unlearning_result.json", record)
    state.wait_for_everyone()
    return record


def run_unlearning(model_dir, method: str, out: str | None, options: dict, retain_size: int | None = None,
                   seed: int = 0) -> dict:
    """Measure, unlearn with `method`, measure again, save the adapter: the before/after record."""
    setup = prepare_unlearning(model_dir, retain_size, seed)
    return unlearn_prepared(setup, method, options, out)
