"""A TinyMem run directory: a Hugging Face model folder plus `tinymem.json`, the run's record (data config and
seed that regenerate its artifacts, training config, memorization curve, final metrics, library versions).

The one reader and writer of `tinymem.json`; the file is written last, so its `finished` flag marks a run
whose weights are complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..data import TinyMemDataConfig, build_tinymem
from ..utils import atomic_write_json

RUN_FILE = "tinymem.json"


def read_run_info(run_dir: str | os.PathLike) -> dict:
    """The `tinymem.json` of `run_dir`; FileNotFoundError when there is none."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} holds no TinyMem run (no {RUN_FILE}); allowed: a folder written by "
                                "`hf-memmit train`, `train_tinymem` or `finetune_tinymem`")
    return json.loads(path.read_text())


def write_run_info(run_dir: str | os.PathLike, info: dict) -> None:
    atomic_write_json(Path(run_dir) / RUN_FILE, info)


def is_finished(run_dir: str | os.PathLike) -> bool:
    path = Path(run_dir) / RUN_FILE
    return path.exists() and json.loads(path.read_text()).get("finished", False)


def run_data_config(run_dir: str | os.PathLike) -> TinyMemDataConfig:
    """The data config a run was trained on (its artifacts regenerate from it)."""
    return TinyMemDataConfig.from_dict(read_run_info(run_dir)["data_config"])


def load_run(run_dir: str | os.PathLike):
    """(model, dataset) of a finished run: the plain GPT-2 checkpoint and its regenerated TinyMem data."""
    from transformers import AutoModelForCausalLM

    if not is_finished(run_dir):
        raise FileNotFoundError(f"{run_dir} holds no finished TinyMem run (no {RUN_FILE} marked finished)")
    model = AutoModelForCausalLM.from_pretrained(run_dir)
    return model, build_tinymem(run_data_config(run_dir))
