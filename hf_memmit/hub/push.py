"""Push TinyMem checkpoints, unlearning adapters and datasets with the `huggingface_hub` client.

Each push first writes the exact repo contents into a local folder (`export_*`), then uploads that folder
in one `upload_folder` call: what lands on the Hub is what a local `load_tinymem(folder)` already accepts.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

from huggingface_hub import DatasetCard, HfApi

from ..data import TinyMemDataConfig, build_tinymem, data_config_of
from ..tinymem import evaluate_tinymem, is_finished, read_run_info, write_run_info
from ..utils import atomic_write_bytes, atomic_write_json, library_versions
from .cards import adapter_card, dataset_card, model_card
from .files import (
    ADAPTER_PATTERNS,
    MODEL_PATTERNS,
    TINYMEM_FILE,
    UNLEARNING_FILE,
    artifact_fingerprint,
    artifact_split,
    require_safetensors,
)
from .naming import check_repo_id, dataset_config_name


def hub_api(api: HfApi | None = None) -> HfApi:
    return api or HfApi(library_name="hf_memmit", library_version=version("hf_memmit"))


def export_checkpoint(run_dir, folder, *, repo_id: str, dataset_repo: str | None = None,
                      batch_size: int = 64) -> dict:
    """Write the repo contents of a finished run into `folder`: safetensors weights, config, tokenizer,
    `tinymem.json` (data config + seed, training config, numbers measured now) and the model card.
    Returns the `tinymem.json` written."""
    from transformers import AutoModelForCausalLM

    run_dir, folder = Path(run_dir), Path(folder)
    if not is_finished(run_dir):
        raise FileNotFoundError(f"{run_dir} holds no finished TinyMem run ({TINYMEM_FILE} missing or not marked "
                                "finished); finish it with `hf-memmit train --out RUN_DIR` before pushing")
    require_safetensors(run_dir, "model.safetensors", "run directory")
    info = read_run_info(run_dir)
    data = TinyMemDataConfig.from_dict(info["data_config"])
    model = AutoModelForCausalLM.from_pretrained(run_dir, use_safetensors=True)
    dataset = build_tinymem(data)
    split = artifact_split(data.artifact)
    config_name = dataset_config_name(data)
    info["hub"] = {
        "repo_id": repo_id, "dataset_repo": dataset_repo, "dataset_config": config_name, "artifact_split": split,
        "artifact_fingerprint": artifact_fingerprint(dataset[split]),
        "measured": evaluate_tinymem(model, dataset, data.task, data.artifact, batch_size),
        "pushed_with": library_versions(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    _copy_matching(run_dir, folder, MODEL_PATTERNS)
    write_run_info(folder, info)
    card = model_card(info, repo_id, dataset_repo=dataset_repo, config_name=config_name)
    atomic_write_bytes(folder / "README.md", str(card).encode())
    return info


def export_adapter(adapter_dir, folder, *, repo_id: str, base_model: str | None = None) -> dict:
    """Write the repo contents of an unlearning adapter (as `hf-memmit unlearn --out` saves it) into `folder`,
    with its card. `base_model` (a Hub repo id) also replaces the local path in `adapter_config.json`."""
    adapter_dir, folder = Path(adapter_dir), Path(folder)
    if not (adapter_dir / UNLEARNING_FILE).exists() or not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter_dir} is not an unlearning adapter folder: it needs adapter_config.json "
                                f"and {UNLEARNING_FILE} (write one with `hf-memmit unlearn ... --out DIR`)")
    require_safetensors(adapter_dir, "adapter_model.safetensors", "adapter folder")
    if base_model is not None:
        check_repo_id(base_model)
    record = json.loads((adapter_dir / UNLEARNING_FILE).read_text())
    folder.mkdir(parents=True, exist_ok=True)
    _copy_matching(adapter_dir, folder, ADAPTER_PATTERNS)
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if base_model is not None:
        adapter_config["base_model_name_or_path"] = base_model
        record["model"] = base_model  # a local path means nothing to whoever downloads it
    atomic_write_json(folder / "adapter_config.json", adapter_config)
    atomic_write_json(folder / UNLEARNING_FILE, record)
    atomic_write_bytes(folder / "README.md", str(adapter_card(record, repo_id, base_model=base_model)).encode())
    return record


def push_checkpoint(run_dir, repo_id: str, *, private: bool = False, dataset_repo: str | None = None,
                    api: HfApi | None = None) -> dict:
    """Push a finished TinyMem run to the model repo `repo_id`; returns its `tinymem.json` plus the commit."""
    check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="hf_memmit_push_") as tmp:
        info = export_checkpoint(run_dir, tmp, repo_id=repo_id, dataset_repo=dataset_repo)
        commit = _upload(hub_api(api), tmp, repo_id, "model", private, f"Upload TinyMem checkpoint {Path(run_dir).name}")
    return {**info, "commit": commit.oid, "commit_url": commit.commit_url}


def push_adapter(adapter_dir, repo_id: str, *, base_model: str | None = None, private: bool = False,
                 api: HfApi | None = None) -> dict:
    """Push an unlearning adapter folder to the model repo `repo_id`; returns its record plus the commit."""
    check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="hf_memmit_push_") as tmp:
        record = export_adapter(adapter_dir, tmp, repo_id=repo_id, base_model=base_model)
        commit = _upload(hub_api(api), tmp, repo_id, "model", private, f"Upload {record['method']} adapter")
    return {**record, "commit": commit.oid, "commit_url": commit.commit_url}


def push_dataset(dataset, repo_id: str, *, config_name: str | None = None, private: bool = False,
                 api: HfApi | None = None) -> str:
    """Push a TinyMem `DatasetDict` as one config of the dataset repo `repo_id` (`datasets`' own
    `push_to_hub`), then update the card: licence, how it was generated, every config's data config.
    Returns the config name."""
    check_repo_id(repo_id)
    cfg = data_config_of(dataset)
    name = config_name or dataset_config_name(cfg)
    dataset.push_to_hub(repo_id, config_name=name, private=private, commit_message=f"Upload TinyMem config {name}")
    metadata = DatasetCard.load(repo_id, repo_type="dataset").data.to_dict()
    configs = {**(metadata.pop("tinymem_configs", None) or {}), name: cfg.to_dict()}
    card = dataset_card(repo_id, metadata, configs, _split_rows(metadata))
    hub_api(api).upload_file(path_or_fileobj=str(card).encode(), path_in_repo="README.md", repo_id=repo_id,
                             repo_type="dataset", commit_message=f"TinyMem dataset card ({name})")
    return name


def _upload(api: HfApi, folder, repo_id: str, repo_type: str, private: bool, message: str):
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type=repo_type, commit_message=message)


def _copy_matching(src: Path, dst: Path, patterns) -> None:
    for f in sorted(src.iterdir()):
        if f.is_file() and any(fnmatch.fnmatch(f.name, p) for p in patterns):
            shutil.copy2(f, dst / f.name)


def _split_rows(metadata: dict) -> dict[str, dict[str, int]]:
    """config -> {split: rows} from the `dataset_info` YAML datasets writes (a dict for one config, else a list)."""
    infos = metadata.get("dataset_info") or []
    infos = [infos] if isinstance(infos, dict) else infos
    return {i.get("config_name", "default"): {s["name"]: s["num_examples"] for s in i.get("splits", [])}
            for i in infos}
