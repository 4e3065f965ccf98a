"""The TinyMem suite: train and push a grid task x artifact x layers x profile x seed, one repo per cell
(named by `naming.suite_model_name`), resumable: a cell already on the Hub is skipped, a trained but unpushed
cell is only pushed, an interrupted training resumes from its last Trainer checkpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import DatasetCard, HfApi, hf_hub_download

from ..data import TinyMemDataConfig, build_tinymem
from ..data.config import ARTIFACTS, TASKS
from ..models import LAYERS
from ..tinymem import TrainConfig, is_finished, train_tinymem
from ..utils import check_choice
from .files import TINYMEM_FILE
from .naming import DATASET_REPO_NAME, check_namespace, dataset_config_name, suite_model_name
from .push import hub_api, push_checkpoint, push_dataset


@dataclass(frozen=True)
class SuiteCell:
    task: str
    artifact: str
    layers: int
    profile: str
    seed: int

    @property
    def name(self) -> str:
        return suite_model_name(self.task, self.artifact, self.layers, self.profile, self.seed)

    def data_config(self) -> TinyMemDataConfig:
        return TinyMemDataConfig(task=self.task, artifact=self.artifact, profile=self.profile, seed=self.seed)


def suite_grid(tasks=TASKS, artifacts=ARTIFACTS, layers=LAYERS, profiles=("paper",), seeds=(0,)) -> list[SuiteCell]:
    """Every cell of the grid, validated (bad choices raise before anything trains)."""
    cells = [SuiteCell(t, a, n, p, s) for t in tasks for a in artifacts for n in layers for p in profiles
             for s in seeds]
    for cell in cells:
        check_choice("layers", cell.layers, LAYERS)
        cell.name  # noqa: B018  (validates the other choices)
    return cells


def pushed_run(repo_id: str, api: HfApi | None = None) -> dict | None:
    """The `tinymem.json` of a model repo on the Hub; None if the repo or the file does not exist. Asks the
    Hub (an unreachable Hub is an error, not "absent", so a suite never redoes work it cannot check)."""
    if not hub_api(api).file_exists(repo_id, TINYMEM_FILE):
        return None
    return json.loads(Path(hf_hub_download(repo_id, TINYMEM_FILE)).read_text())


def pushed_configs(dataset_repo: str, api: HfApi | None = None) -> set[str]:
    """TinyMem configs already in a dataset repo (listed in its card)."""
    if not hub_api(api).file_exists(dataset_repo, "README.md", repo_type="dataset"):
        return set()
    card = DatasetCard.load(dataset_repo, repo_type="dataset")
    return set(card.data.to_dict().get("tinymem_configs") or {})


def cell_status(cell: SuiteCell, repo_id: str, run_dir: Path, api: HfApi | None = None) -> str:
    """"pushed", "trained" (finished locally, not on the Hub) or "todo". A repo holding a different run
    under the cell's name is an error, never overwritten."""
    info = pushed_run(repo_id, api)
    if info is not None:
        same = info.get("data_config") == cell.data_config().to_dict() and info.get("n_layer") == cell.layers
        if not same:
            raise ValueError(f"{repo_id} holds a TinyMem run that is not the cell {cell.name} (its data config or "
                             "layers differ); refusing to overwrite it")
        return "pushed"
    return "trained" if is_finished(run_dir) else "todo"


def run_suite(org: str, cells: list[SuiteCell], work_dir, *, private: bool = False, push_data: bool = True,
              dry_run: bool = False, on_event=None, api: HfApi | None = None) -> list[dict]:
    """Train and push every cell not yet on the Hub under `org`; returns one record per cell
    (`status` before the run, `action` taken, or to take with `dry_run`). `on_event(record)` is called as
    each cell finishes."""
    check_namespace(org)
    work_dir = Path(work_dir)
    dataset_repo = f"{org}/{DATASET_REPO_NAME}"
    have_configs = pushed_configs(dataset_repo, api) if push_data and not dry_run else set()
    records = []
    for cell in cells:
        repo_id, run_dir = f"{org}/{cell.name}", work_dir / cell.name
        status = cell_status(cell, repo_id, run_dir, api)
        action = {"pushed": "skip", "trained": "push", "todo": "train+push"}[status]
        record = {"cell": cell.name, "repo_id": repo_id, "status": status, "action": action}
        if action != "skip" and not dry_run:
            data = cell.data_config()
            if status == "todo":
                train_tinymem(run_dir, data, TrainConfig(n_layer=cell.layers), progress_bar=False)
            if push_data and dataset_config_name(data) not in have_configs:
                have_configs.add(push_dataset(build_tinymem(data), dataset_repo, private=private, api=api))
            pushed = push_checkpoint(run_dir, repo_id, private=private,
                                     dataset_repo=dataset_repo if push_data else None, api=api)
            record["measured"] = pushed["hub"]["measured"]
        records.append(record)
        if on_event is not None:
            on_event(record)
    return records
