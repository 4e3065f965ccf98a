"""Train a TinyMem model with `transformers.Trainer` (no hand-written loop), resumable, with metrics logged.

A run directory is itself a Hugging Face model folder once finished (`config.json`, `model.safetensors`,
tokenizer files) plus `tinymem.json` (data config + seed that regenerate the artifacts, training config,
memorization curve, final metrics, library versions). Intermediate Trainer checkpoints live in
`RUN_DIR/checkpoints/`; a run killed mid-way resumes from the newest complete one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

from ..data import TinyMemDataConfig, build_tinymem
from ..data.tokenizers import MathTokenizer, gpt2_tokenizer
from ..utils import atomic_write_json, check_choice, check_range, library_versions
from .config import tinymem_config

RUN_FILE = "tinymem.json"
SCHEDULES = ("constant", "cosine", "linear")

# (task, artifact, profile) -> training defaults. `paper` is tinymem.md §3; `quick` reaches the issue's
# memorization floors on 2 CPU cores (batch 32 costs no more per row than 128 on CPU and gives 4x the
# steps; warm-up avoids a trivial plateau); `tiny` trains a small memorizing model for tests.
_PAPER = dict(batch_size=128, learning_rate=1e-3, schedule="constant", warmup=0.0)
_QUICK = dict(batch_size=32, learning_rate=2e-3, schedule="cosine", warmup=0.05)
_DEFAULTS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("math", "noise", "paper"): dict(_PAPER, epochs=3500, eval_every=50, save_every=50),
    ("math", "backdoor", "paper"): dict(_PAPER, epochs=500, eval_every=50, save_every=50),
    ("language", "noise", "paper"): dict(_PAPER, epochs=100, eval_every=10, save_every=10),
    ("language", "backdoor", "paper"): dict(_PAPER, epochs=50, eval_every=10, save_every=10),
    ("math", "noise", "quick"): dict(_QUICK, epochs=45, eval_every=5, save_every=5),
    ("math", "backdoor", "quick"): dict(_QUICK, epochs=10, eval_every=1, save_every=2),
    ("language", "noise", "quick"): dict(_QUICK, batch_size=16, epochs=2, eval_every=0.25, save_every=0.5),
    ("language", "backdoor", "quick"): dict(_QUICK, batch_size=16, epochs=1, eval_every=0.25, save_every=0.5),
    ("math", "noise", "tiny"): dict(_QUICK, epochs=40, eval_every=10, save_every=10),
    ("math", "backdoor", "tiny"): dict(_QUICK, epochs=10, eval_every=2, save_every=5),
    ("language", "noise", "tiny"): dict(_QUICK, batch_size=16, epochs=1, eval_every=0.5, save_every=0.5),
    ("language", "backdoor", "tiny"): dict(_QUICK, batch_size=16, epochs=1, eval_every=0.5, save_every=0.5),
}
_QUICK_EPOCHS_BY_LAYERS = {("math", "noise"): {2: 80}}  # 2-layer math+noise needs more epochs than 4


@dataclass
class TrainConfig:
    """Optimizer and schedule of a TinyMem run; `None` fields take the profile's defaults.

    AdamW with betas (0.9, 0.98) and weight decay 0.1 as the paper; no gradient clipping; the loss is the
    mean token cross-entropy over all 149 shifted positions, pads included (as the paper trains).
    `eval_every` / `save_every` are in epochs and may be fractional.
    """

    n_layer: int = 4
    epochs: float | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    schedule: str | None = None
    warmup: float | None = None
    weight_decay: float = 0.1
    adam_beta2: float = 0.98
    eval_every: float | None = None
    save_every: float | None = None
    eval_batch_size: int = 128
    allow_custom_layers: bool = False
    torch_compile: bool = False
    bf16: bool = False

    def resolve(self, data: TinyMemDataConfig) -> "TrainConfig":
        out = dataclasses.replace(self)
        defaults = dict(_DEFAULTS[(data.task, data.artifact, data.profile)])
        if data.profile == "quick":
            defaults["epochs"] = _QUICK_EPOCHS_BY_LAYERS.get((data.task, data.artifact), {}).get(
                self.n_layer, defaults["epochs"])
        for name, value in defaults.items():
            if getattr(out, name) is None:
                setattr(out, name, value)
        check_choice("schedule", out.schedule, SCHEDULES)
        check_range("warmup", out.warmup, 0.0, 1.0, high_open=True)
        for name in ("epochs", "batch_size", "learning_rate", "eval_every", "save_every"):
            if getattr(out, name) <= 0:
                raise ValueError(f"{name}={getattr(out, name)!r} must be positive")
        return out


def causal_lm_collator(features: list[dict]) -> dict[str, torch.Tensor]:
    """Rows are already fixed-length blocks: labels are the inputs (the model shifts them), pads included."""
    ids = torch.tensor([f["input_ids"] for f in features], dtype=torch.long)
    return {"input_ids": ids, "labels": ids.clone()}


def last_complete_checkpoint(folder: str | os.PathLike) -> str | None:
    """Newest `checkpoint-N` that finished saving: Trainer writes `trainer_state.json` last, so a checkpoint
    without it (the run died while saving) is skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").exists()
            and p.name.split("-")[-1].isdigit()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def evaluate_tinymem(model, dataset, task: str, artifact: str, batch_size: int = 128, progress: bool = False) -> dict:
    """Memorization of the artifact rows (the held-out backdoored rows for backdoors) plus accuracy (math) or
    perplexity (language) on the clean test rows: the numbers a TinyMem run reports during and after training."""
    from ..metrics import measure_memorization, perplexity, token_accuracy

    rows = dataset["backdoor_test" if artifact == "backdoor" else "forget"]
    mem = measure_memorization(model, rows, batch_size=batch_size, progress=progress)
    out = {"memorized": mem.fraction, "memorized_count": mem.memorized, "qualifying": mem.total,
           "clean_continuation": mem.clean_fraction}
    for cls, c in mem.per_class.items():
        out[f"memorized_dup{cls}"] = c["fraction"]
    if task == "math":
        acc = token_accuracy(model, dataset["test"], pad_token_id=13, batch_size=batch_size)
        out.update(accuracy=acc["average"]["accuracy"], accuracy_no_pad=acc["average"]["accuracy_no_pad"],
                   accuracy_main=acc[next(t for t in acc if t.endswith("_7"))]["accuracy"])
    else:
        ppl = perplexity(model, dataset["test"], batch_size=batch_size)
        out.update(perplexity=ppl["corpus"], perplexity_mean_batch_exp=ppl["mean_batch_exp"])
    return out


class TinyMemMetricsCallback(TrainerCallback):
    """Logs memorization of the artifact rows and accuracy/perplexity on the clean test rows every
    `every_steps` optimizer steps and at the end, into `state.log_history` (so the curve survives resume)."""

    def __init__(self, dataset, task: str, artifact: str, every_steps: int, batch_size: int = 128, progress=None):
        self.dataset, self.task, self.artifact = dataset, task, artifact
        self.every_steps, self.batch_size, self.progress = max(1, every_steps), batch_size, progress

    def evaluate(self, model) -> dict[str, float]:
        return evaluate_tinymem(model, self.dataset, self.task, self.artifact, self.batch_size)

    def _log(self, state, model):
        if any(e.get("step") == state.global_step and "memorized" in e for e in state.log_history):
            return
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **self.evaluate(model)}
        state.log_history.append(record)
        if self.progress is not None:
            self.progress(record)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every_steps == 0:
            self._log(state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._log(state, model)


def tokenizer_for(task: str):
    return MathTokenizer() if task == "math" else gpt2_tokenizer()


def is_finished(run_dir: str | os.PathLike) -> bool:
    path = Path(run_dir) / RUN_FILE
    return path.exists() and json.loads(path.read_text()).get("finished", False)


def make_trainer(output_dir, data: TinyMemDataConfig, train: TrainConfig, dataset, *, seed: int,
                 progress_bar: bool = True, on_metrics=None, callbacks=(), save: bool = True,
                 evaluate: bool = True, trainer_cls: type[Trainer] = Trainer,
                 trainer_kwargs: dict | None = None) -> tuple[Trainer, TinyMemMetricsCallback | None]:
    """The Trainer of a TinyMem run (also used by the throughput benchmark, so both time the same path).

    `trainer_cls` / `trainer_kwargs` swap in a Trainer subclass (a regularizer, MemSinks) with its own arguments
    (a `data_collator` there replaces the default one)."""
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(tinymem_config(data.task, train.n_layer, allow_custom_layers=train.allow_custom_layers,
                                           max_ctx=data.max_ctx))
    steps_per_epoch = -(-len(dataset["train"]) // train.batch_size)
    args = TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=train.epochs, per_device_train_batch_size=train.batch_size,
        learning_rate=train.learning_rate, lr_scheduler_type=train.schedule, warmup_steps=train.warmup,
        weight_decay=train.weight_decay, adam_beta1=0.9, adam_beta2=train.adam_beta2, max_grad_norm=0.0,
        save_strategy="steps" if save else "no", save_steps=max(1, round(train.save_every * steps_per_epoch)),
        save_total_limit=2, logging_steps=max(1, steps_per_epoch), report_to="none", seed=seed, data_seed=seed,
        disable_tqdm=not progress_bar, dataloader_num_workers=0, torch_compile=train.torch_compile,
        bf16=train.bf16, use_cpu=not torch.cuda.is_available(),
    )
    metrics_cb = None
    if evaluate:
        metrics_cb = TinyMemMetricsCallback(dataset, data.task, data.artifact,
                                            max(1, round(train.eval_every * steps_per_epoch)), train.eval_batch_size,
                                            on_metrics)
        callbacks = [metrics_cb, *callbacks]
    kwargs = {"data_collator": causal_lm_collator, **(trainer_kwargs or {})}  # a regularizer may bring its own
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset["train"],
                          processing_class=tokenizer_for(data.task), callbacks=list(callbacks), **kwargs)
    return trainer, metrics_cb


def train_tinymem(run_dir: str | os.PathLike, data: TinyMemDataConfig, train: TrainConfig | None = None, *,
                  seed: int | None = None, overwrite: bool = False, resume: bool = True,
                  progress_bar: bool = True, on_metrics=None, callbacks=(), trainer_cls: type[Trainer] = Trainer,
                  trainer_kwargs: dict | None = None, extra_summary: dict | None = None) -> dict:
    """Train (or resume) a TinyMem model in `run_dir`; returns the final summary written to `tinymem.json`."""
    run_dir = Path(run_dir)
    train = (train or TrainConfig()).resolve(data)
    seed = data.seed if seed is None else seed
    if is_finished(run_dir):
        if not overwrite:
            raise FileExistsError(f"{run_dir} holds a finished run; pass overwrite=True (--overwrite) to replace it")
        shutil.rmtree(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    resume_from = last_complete_checkpoint(ckpt_dir) if resume else None
    if resume_from is None and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    dataset = build_tinymem(data)
    trainer, metrics_cb = make_trainer(ckpt_dir, data, train, dataset, seed=seed, progress_bar=progress_bar,
                                       on_metrics=on_metrics, callbacks=callbacks, trainer_cls=trainer_cls,
                                       trainer_kwargs=trainer_kwargs)
    tokenizer = trainer.processing_class
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - started

    curve = [e for e in trainer.state.log_history if "memorized" in e]
    final = {k: v for k, v in curve[-1].items() if k not in ("step", "epoch")}  # logged at train end
    _save_final(trainer, tokenizer, run_dir)
    summary = {
        "finished": True, "data_config": data.to_dict(), "train_config": dataclasses.asdict(train), "seed": seed,
        "n_layer": train.n_layer, "final_metrics": final, "curve": curve,
        "train_seconds_this_session": seconds, "resumed_from": resume_from, "global_step": trainer.state.global_step,
        "train_loss": result.training_loss, "versions": library_versions(), **(extra_summary or {}),
    }
    atomic_write_json(run_dir / RUN_FILE, summary)  # written last: its presence marks the run finished
    return summary


def load_run(run_dir: str | os.PathLike):
    """(model, dataset) of a finished run: the plain GPT-2 checkpoint and its regenerated TinyMem data."""
    from transformers import AutoModelForCausalLM

    info_path = Path(run_dir) / RUN_FILE
    if not is_finished(run_dir):
        raise FileNotFoundError(f"{run_dir} holds no finished TinyMem run (no {RUN_FILE} marked finished)")
    info = json.loads(info_path.read_text())
    model = AutoModelForCausalLM.from_pretrained(run_dir)
    return model, build_tinymem(TinyMemDataConfig.from_dict(info["data_config"]))


def _save_final(trainer: Trainer, tokenizer, run_dir: Path) -> None:
    """Save weights + tokenizer into a temp folder, then move each file into place (atomic per file)."""
    tmp = run_dir / ".final.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    trainer.save_model(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    for f in tmp.iterdir():
        if f.name != "training_args.bin":  # a pickle; the run's config is in tinymem.json instead
            os.replace(f, run_dir / f.name)
    shutil.rmtree(tmp)
