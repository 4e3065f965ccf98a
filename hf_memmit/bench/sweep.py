"""Run a bench: train each setting's TinyMem model, time its Extra fine-tuning (the unlearning time budget), then
fit every method at every point of its grid, one JSON line per run. Resumable at every level: a finished model,
setting record or run is kept and skipped."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Sequence

from ..tinymem import (
    FinetuneConfig,
    TrainConfig,
    finetune_tinymem,
    is_finished,
    prepare_unlearning,
    train_tinymem,
    unlearn_prepared,
)
from ..unlearning import method_names
from ..utils import check_int, library_versions
from .grids import method_grid
from .results import append_run, model_dir, read_runs, read_setting, record_invocation, run_key, write_setting
from .settings import Setting

PAPER_EXTRA_FT_EPOCHS = 5  # the paper's fine-tuning length, whose Extra-FT time is the unlearning budget
PROMPT_SCORED = ("act", "ig")  # scored on the suffix after the prompt, as the TinyMem reference does


def prepare_setting(results_dir, setting: Setting, extra_ft_epochs: float = PAPER_EXTRA_FT_EPOCHS,
                    log: Callable[[str], None] = print) -> dict:
    """Train the setting's model (or resume it) and run Extra fine-tuning on a copy of it; the record holds the
    unedited model's numbers, the fine-tuned model's, and the budget: Extra-FT seconds scaled to the paper's 5
    epochs when fewer were run (the per-epoch cost is constant, so this is the paper's budget, measured)."""
    record = read_setting(results_dir, setting.name)
    if record is not None:
        return record
    run_dir = model_dir(results_dir, setting.name)
    if not is_finished(run_dir):
        log(f"{setting.name}: training")
        train_tinymem(run_dir, setting.data_config(), TrainConfig(n_layer=setting.n_layer), progress_bar=False,
                      on_metrics=lambda r: log(f"{setting.name}: epoch {r['epoch']:g} memorized "
                                               f"{r['memorized']:.3f}"))
    log(f"{setting.name}: Extra fine-tuning ({extra_ft_epochs:g} epochs)")
    ft = finetune_tinymem(run_dir, FinetuneConfig(data="extra", epochs=extra_ft_epochs, seed=setting.seed))
    budget = ft["train_seconds"] * PAPER_EXTRA_FT_EPOCHS / extra_ft_epochs
    record = {"setting": setting.to_dict(), "name": setting.name, "group": setting.group,
              "before": ft["before"], "extra_ft": {"epochs": extra_ft_epochs, "seconds": ft["train_seconds"],
                                                   "after": ft["after"], "rows": ft["rows"]},
              "budget_seconds": budget, "versions": library_versions()}
    write_setting(results_dir, setting.name, record)
    return record


def sweep_points(setting: Setting, methods: Sequence[str], grid: str) -> list[tuple[str, dict]]:
    """(method, options) for every grid point of every method on `setting`."""
    points = []
    prompt = setting.data_config().prompt_length
    for method in methods:
        for options in method_grid(method, grid, setting.task, setting.n_layer):
            if method in PROMPT_SCORED:
                options = {**options, "prefix_len": prompt}
            points.append((method, options))
    return points


_SETUPS: dict = {}  # per process: run dir -> its UnlearningSetup, prepared once


def run_point(run_dir: str, method: str, options: dict, retain_size: int | None, seed: int) -> dict:
    """One unlearning run as a sweep row; a failure is a row with its error, not an exception."""
    key = (run_dir, retain_size, seed)
    if key not in _SETUPS:
        _SETUPS.clear()
        _SETUPS[key] = prepare_unlearning(run_dir, retain_size, seed)
    started = time.perf_counter()
    try:
        record = unlearn_prepared(_SETUPS[key], method, options)
    except Exception as err:  # a method that fails at a grid point is a result of the sweep
        traceback.print_exc()
        return {"method": method, "options": options, "status": "error", "error": f"{type(err).__name__}: {err}",
                "seconds": time.perf_counter() - started}
    return {**record, "options": options, "status": "ok"}


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def sweep_setting(results_dir, setting: Setting, methods: Sequence[str], grid: str, retain_size: int | None = None,
                  jobs: int = 1, runner: Callable = run_point, log: Callable[[str], None] = print) -> int:
    """Run every grid point of `setting` not yet in the results; returns how many ran."""
    check_int("jobs", jobs, 1)
    done = {r["key"] for r in read_runs(results_dir)}
    todo = [(m, o) for m, o in sweep_points(setting, methods, grid) if run_key(setting.name, m, o) not in done]
    run_dir = str(model_dir(results_dir, setting.name))

    def record(method, options, row):
        row = {**row, "key": run_key(setting.name, method, options), "setting": setting.name,
               "group": setting.group, "task": setting.task, "seed": setting.seed, "retain_size": retain_size}
        append_run(results_dir, row)
        status = (f"memorized {row['before']['memorized']:.3f} -> {row['after']['memorized']:.3f}"
                  if row["status"] == "ok" else row["error"])
        log(f"{setting.name}: {method} {options}: {status} ({row['seconds']:.1f} s)")

    if jobs == 1:
        for method, options in todo:
            record(method, options, runner(run_dir, method, options, retain_size, setting.seed))
        return len(todo)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
                                initargs=(threads,)) as pool:
        futures = {pool.submit(runner, run_dir, m, o, retain_size, setting.seed): (m, o) for m, o in todo}
        for future in cf.as_completed(futures):
            record(*futures[future], future.result())
    return len(todo)


def run_bench(results_dir, settings: Sequence[Setting], methods: Sequence[str] | None = None, grid: str = "quick",
              retain_size: int | None = None, jobs: int = 1, extra_ft_epochs: float = PAPER_EXTRA_FT_EPOCHS,
              log: Callable[[str], None] = print) -> None:
    """Train, budget and sweep every setting into `results_dir` (see `hf_memmit.bench.results` for its files);
    running it again continues where a killed run stopped."""
    methods = list(methods or method_names())
    for method in methods:
        method_grid(method, grid, "math", 4)  # unknown methods and grids fail before any training
    record_invocation(results_dir, {"grid": grid, "settings": [s.to_dict() for s in settings], "methods": methods,
                                    "retain_size": retain_size, "jobs": jobs, "extra_ft_epochs": extra_ft_epochs,
                                    "versions": library_versions()})
    for setting in settings:
        prepare_setting(results_dir, setting, extra_ft_epochs, log)
        sweep_setting(results_dir, setting, methods, grid, retain_size, jobs, log=log)
