"""Train a TinyMem model with `transformers.Trainer` (no hand-written loop), resumable, with metrics logged.

A finished run directory is a Hugging Face model folder plus `tinymem.json` (see `run_dir`). Intermediate
Trainer checkpoints live in `RUN_DIR/checkpoints/`; a run killed mid-way resumes from the newest complete one.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import torch
from transformers import GPT2LMHeadModel, PrinterCallback, ProgressCallback, Trainer, TrainingArguments

from ..compat import drop_transformers_notice
from ..data import TinyMemDataConfig, build_tinymem
from ..data.tokenizers import MathTokenizer, gpt2_tokenizer
from ..models.config import tinymem_config
from ..utils import library_versions
from .evaluate import TinyMemMetricsCallback
from .run_dir import is_finished, write_run_info
from .train_config import TrainConfig


def causal_lm_collator(features: list[dict]) -> dict[str, torch.Tensor]:
    """Rows are already fixed-length blocks: labels are the inputs (the model shifts them), pads included. The
    all-ones attention mask says that pads are attended, as the paper trains (the same losses and gradients as
    no mask; without one, transformers warns that pads may be unmasked)."""
    ids = torch.tensor([f["input_ids"] for f in features], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def quiet_default_loss_notice() -> None:
    """GPT-2's class name maps to no transformers loss type, so its first forward with labels says that it falls
    back to the causal-LM loss, which is the loss we want. Naming the type instead (`model.loss_type`) would drop
    the notice but also change how the Trainer counts `num_items_in_batch` (149 shifted positions per row instead
    of all 150), which scales the loss and, through gradient clipping, every trained number; so the type stays
    unset, as the published runs were trained, and only the notice is filtered."""
    drop_transformers_notice("Using the default loss: `ForCausalLMLoss`")


class _BarOnlyProgress(ProgressCallback):
    """The progress bar without the raw log dicts it prints every logging step."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


def print_no_log_dicts(trainer: Trainer) -> None:
    """Keep the progress bar (if any) but not the `{'loss': ...}` dicts the Trainer prints at each logging step:
    a TinyMem run prints its own line per evaluation, and the logs stay in `state.log_history`."""
    if trainer.pop_callback(PrinterCallback) is None and trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(_BarOnlyProgress)


def training_arguments(output_dir, *, seed: int, weight_decay: float, adam_beta2: float, **kwargs) -> TrainingArguments:
    """The optimizer setup every TinyMem training shares (a run and its fine-tuning): AdamW with betas (0.9,
    adam_beta2), no gradient clipping, no reporting, seeded data order, in-process data loading, the CPU when
    there is no GPU. `kwargs`: the rest of `TrainingArguments` (epochs, batch size, schedule, saving, ...)."""
    return TrainingArguments(output_dir=str(output_dir), weight_decay=weight_decay, adam_beta1=0.9,
                             adam_beta2=adam_beta2, max_grad_norm=0.0, report_to="none", seed=seed, data_seed=seed,
                             dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(), **kwargs)


def last_complete_checkpoint(folder: str | os.PathLike) -> str | None:
    """Newest `checkpoint-N` that finished saving: Trainer writes `trainer_state.json` last, so a checkpoint
    without it (the run died while saving) is skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").exists()
            and p.name.split("-")[-1].isdigit()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def tokenizer_for(task: str):
    return MathTokenizer() if task == "math" else gpt2_tokenizer()


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
    quiet_default_loss_notice()
    steps_per_epoch = -(-len(dataset["train"]) // train.batch_size)
    args = training_arguments(
        output_dir, seed=seed, weight_decay=train.weight_decay, adam_beta2=train.adam_beta2,
        num_train_epochs=train.epochs, per_device_train_batch_size=train.batch_size,
        learning_rate=train.learning_rate, lr_scheduler_type=train.schedule, warmup_steps=train.warmup,
        save_strategy="steps" if save else "no", save_steps=max(1, round(train.save_every * steps_per_epoch)),
        save_total_limit=2, logging_steps=max(1, steps_per_epoch), disable_tqdm=not progress_bar,
        torch_compile=train.torch_compile, bf16=train.bf16,
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
    print_no_log_dicts(trainer)
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
    write_run_info(run_dir, summary)  # written last: its presence marks the run finished
    return summary


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
