"""Download a TinyMem checkpoint (Hub, local HF cache with `HF_HUB_OFFLINE=1`, or a local folder) with
everything needed to measure it: model, tokenizer and its regenerated artifact rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import DatasetCard, snapshot_download

from ..compat import quiet_peft_wrapping
from ..data import TinyMemDataConfig, build_tinymem
from ..tinymem import read_run_info
from .files import TINYMEM_FILE, artifact_fingerprint, artifact_split, require_safetensors
from .naming import check_repo_id


@dataclass
class TinyMemCheckpoint:
    """What `load_tinymem` returns; unpacks as `model, tokenizer, dataset = load_tinymem(...)`.

    `artifacts` is the split memorization is measured on (`measure_memorization(model, artifacts)`);
    `info` the repo's `tinymem.json` (data config, seed, training config, numbers measured at push time)."""

    model: object
    tokenizer: object
    dataset: object
    info: dict
    path: str

    @property
    def data_config(self) -> TinyMemDataConfig:
        return TinyMemDataConfig.from_dict(self.info["data_config"])

    @property
    def artifacts(self):
        return self.dataset[artifact_split(self.data_config.artifact)]

    def __iter__(self):
        return iter((self.model, self.tokenizer, self.dataset))


def resolve_folder(repo_id_or_path: str, *, repo_type: str = "model", revision: str | None = None,
                   **download_kwargs) -> Path:
    """A local folder as is; otherwise the repo's snapshot through the HF cache (offline: the cached one)."""
    if Path(repo_id_or_path).is_dir():
        return Path(repo_id_or_path)
    check_repo_id(repo_id_or_path)
    return Path(snapshot_download(repo_id_or_path, repo_type=repo_type, revision=revision, **download_kwargs))


def read_tinymem_json(folder: Path, source: str) -> dict:
    path = folder / TINYMEM_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{source} has no {TINYMEM_FILE}, so the data config and seed that regenerate its artifact rows are "
            f"missing: it was not pushed by hf_memmit. The weights still load with "
            f"AutoModelForCausalLM.from_pretrained({source!r}); build the rows yourself with "
            "hf_memmit.load_tinymem_dataset(task=..., artifact=..., profile=..., seed=...).")
    info = read_run_info(folder)
    missing = [k for k in ("data_config", "seed") if k not in info]
    if missing:
        raise ValueError(f"{source}/{TINYMEM_FILE} lacks {missing}; a TinyMem checkpoint records data_config and seed")
    return info


def load_tinymem(repo_id_or_path: str, *, revision: str | None = None, adapter: str | None = None,
                 verify: bool = True, **download_kwargs) -> TinyMemCheckpoint:
    """Load a TinyMem checkpoint and regenerate its artifact rows from the recorded data config and seed.

    `adapter`: an unlearning adapter (repo id or folder) to put on top (a `PeftModel`). `verify` checks the
    regenerated rows against the fingerprint recorded at push time. Weights load from safetensors only: a
    repo holding pickled weights is refused before anything is read."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_folder(repo_id_or_path, revision=revision, **download_kwargs)
    require_safetensors(folder, "model.safetensors", f"TinyMem repo {repo_id_or_path}")
    info = read_tinymem_json(folder, repo_id_or_path)
    data = TinyMemDataConfig.from_dict(info["data_config"])
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    dataset = build_tinymem(data)
    recorded = info.get("hub", {}).get("artifact_fingerprint")
    if verify and recorded is not None:
        found = artifact_fingerprint(dataset[artifact_split(data.artifact)])
        if found != recorded:
            raise ValueError(
                f"the artifact rows regenerated for {repo_id_or_path} (fingerprint {found[:12]}) differ from the ones "
                f"it was measured on (fingerprint {recorded[:12]}, built with hf_memmit "
                f"{info['hub'].get('pushed_with', {}).get('hf_memmit', '?')}); pass verify=False to use them anyway")
    if adapter is not None:
        model = load_adapter(model, adapter, revision=None, **download_kwargs)
    return TinyMemCheckpoint(model, tokenizer, dataset, info, str(folder))


def load_adapter(model, adapter: str, *, revision: str | None = None, **download_kwargs):
    """`PeftModel` of an unlearning adapter (repo id or folder) on `model`, from safetensors only."""
    from peft import PeftModel  # our mask types are registered with peft by `import hf_memmit` (done by now)

    folder = resolve_folder(adapter, revision=revision, **download_kwargs)
    require_safetensors(folder, "adapter_model.safetensors", f"adapter {adapter}")
    with quiet_peft_wrapping():
        return PeftModel.from_pretrained(model, str(folder))


def load_tinymem_data(repo_id_or_path: str, config_name: str, *, revision: str | None = None, **download_kwargs):
    """One config of a TinyMem dataset repo as a `DatasetDict`, its data config restored (`data_config_of`).

    Goes through `snapshot_download` + `load_dataset(folder)`, which also works offline from the HF cache."""
    from datasets import load_dataset

    folder = resolve_folder(repo_id_or_path, repo_type="dataset", revision=revision, **download_kwargs)
    configs = DatasetCard.load(folder / "README.md").data.to_dict().get("tinymem_configs") or {}
    if config_name not in configs:
        raise ValueError(f"config_name={config_name!r} is not a TinyMem config of {repo_id_or_path}; "
                         f"allowed: {sorted(configs)}")
    dataset = load_dataset(str(folder), config_name)
    description = json.dumps({"tinymem_data_config": configs[config_name]})
    for split in dataset.values():
        split.info.description = description
    return dataset
