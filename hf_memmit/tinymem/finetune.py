"""Fine-tuning mitigation (Sakarvadia et al. 2025, "Mitigating Memorization in Language Models"): continue
training a memorizing TinyMem model for a few more epochs on clean data, with the run's own optimizer settings,
through `transformers.Trainer`.

- `clean`: the clean twins of the artifact rows (`forget` with `clean_input_ids`);
- `extra`: every training row that is not an artifact (`retain`: clean main-task rows and the extra tasks);
- `both`: the union.

The paper trains 5 extra epochs and uses the wall time of Extra-FT as the time budget of unlearning methods, so
the training seconds are recorded apart from the measurements.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, concatenate_datasets
from transformers import Trainer

from ..utils import atomic_folder, atomic_write_json, check_choice, library_versions
from .evaluate import evaluate_tinymem
from .run_dir import load_run, read_run_info, write_run_info
from .train import causal_lm_collator, print_no_log_dicts, quiet_default_loss_notice, tokenizer_for, training_arguments
from .train_config import SCHEDULES

FT_DATA = ("clean", "extra", "both")
RESULT_FILE = "finetune.json"


@dataclass
class FinetuneConfig:
    """Args:
        data: "clean", "extra" or "both" (see the module docstring).
        epochs: extra epochs over the chosen rows (> 0; the paper: 5).
        batch_size, learning_rate: None takes the run's own (as the paper: same optimizer settings).
        schedule: learning-rate schedule; "constant" as the paper's training.
        seed: data order.
    """

    data: str = "both"
    epochs: float = 5.0
    batch_size: int | None = None
    learning_rate: float | None = None
    schedule: str = "constant"
    seed: int = 0

    def __post_init__(self):
        check_choice("data", self.data, FT_DATA)
        check_choice("schedule", self.schedule, SCHEDULES)
        for name in ("epochs", "batch_size", "learning_rate"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name}={value!r} is out of range; allowed: > 0")


def finetune_rows(dataset, data: str) -> Dataset:
    """The rows a recipe trains on, as an `input_ids` column."""
    check_choice("data", data, FT_DATA)
    clean = dataset["forget"].select_columns(["clean_input_ids"]).rename_column("clean_input_ids", "input_ids")
    extra = dataset["retain"].select_columns(["input_ids"])
    return {"clean": clean, "extra": extra, "both": concatenate_datasets([clean, extra])}[data]


def finetune_trainer(model, rows: Dataset, train_config: dict, config: FinetuneConfig, output_dir: str) -> Trainer:
    """A Trainer continuing `model` on `rows` with the run's AdamW settings (betas 0.9/beta2, weight decay,
    no clipping) and no checkpoints (a few epochs on small data)."""
    args = training_arguments(
        output_dir, seed=config.seed, weight_decay=train_config["weight_decay"], adam_beta2=train_config["adam_beta2"],
        num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size or train_config["batch_size"],
        learning_rate=config.learning_rate or train_config["learning_rate"], lr_scheduler_type=config.schedule,
        save_strategy="no", logging_strategy="epoch", disable_tqdm=True)
    quiet_default_loss_notice()
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=causal_lm_collator)
    print_no_log_dicts(trainer)
    return trainer


def finetune_tinymem(run_dir: str | Path, config: FinetuneConfig | None = None, out_dir: str | Path | None = None,
                     batch_size: int = 128) -> dict:
    """Measure a finished TinyMem run, fine-tune it with `config`, measure again. With `out_dir`, the fine-tuned
    model (safetensors + tokenizer) and `finetune.json` are written there, the folder appearing whole or not at
    all. Returns the record: before/after metrics, training seconds, sizes, configs."""
    config = config or FinetuneConfig()
    info = read_run_info(run_dir)
    task, artifact = info["data_config"]["task"], info["data_config"]["artifact"]
    model, dataset = load_run(run_dir)
    before = evaluate_tinymem(model.eval(), dataset, task, artifact, batch_size)
    rows = finetune_rows(dataset, config.data)
    with tempfile.TemporaryDirectory(prefix="hf_memmit_ft_") as work:
        trainer = finetune_trainer(model, rows, info["train_config"], config, work)
        started = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - started
    after = evaluate_tinymem(model.eval(), dataset, task, artifact, batch_size)
    record = {"model": str(run_dir), "config": dataclasses.asdict(config), "rows": len(rows),
              "steps": trainer.state.global_step, "train_seconds": seconds, "train_loss": result.training_loss,
              "before": before, "after": after, "versions": library_versions()}
    if out_dir is not None:
        _save(model, tokenizer_for(task), info, record, Path(out_dir))
    return record


def _save(model, tokenizer, info: dict, record: dict, out_dir: Path) -> None:
    """Weights, tokenizer, `finetune.json`, and a `tinymem.json` (the run's data config, final metrics = after)
    so the fine-tuned model is itself a run that `load_run`, `hf-memmit measure` and `unlearn` accept."""
    keep = ("data_config", "train_config", "seed", "n_layer")
    with atomic_folder(out_dir) as tmp:
        model.save_pretrained(tmp)  # safetensors
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / RESULT_FILE, record)
        write_run_info(tmp, {**{k: info[k] for k in keep if k in info}, "finished": True,
                             "final_metrics": record["after"], "finetuned_from": record["model"],
                             "finetune": record["config"], "versions": record["versions"]})
