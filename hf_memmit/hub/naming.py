"""Names on the Hub: repo ids, the suite's model repos and the dataset configs, written once here.

A suite model is `ORG/tinymem-{task}-{artifact}-{layers}l-{profile}-s{seed}` (the same stem as a local run
directory, `runs/tinymem-...`), e.g. `tinymem/tinymem-math-noise-4l-paper-s0`. Its data lives in one dataset
repo, `ORG/tinymem-data`, as the config `{task}-{artifact}-{profile}-s{seed}`.
"""

from __future__ import annotations

from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..data import TinyMemDataConfig

DATASET_REPO_NAME = "tinymem-data"
_RULE = "letters, digits, '-', '_', '.', no '--' or '..', at most 96 characters"


def check_repo_id(repo_id: str) -> str:
    """`repo_id` itself when it is `namespace/name` (we never push to an implicit user namespace)."""
    ok = isinstance(repo_id, str) and repo_id.count("/") == 1 and all(repo_id.split("/"))
    try:
        ok = ok and validate_repo_id(repo_id) is None
    except HFValidationError:
        ok = False
    if not ok:
        raise ValueError(f"repo_id={repo_id!r} is not a Hub repo id; expected 'namespace/name' ({_RULE}), "
                         "e.g. 'my-org/tinymem-math'")
    return repo_id


def check_namespace(org: str) -> str:
    """A user or organization name to push a suite under."""
    try:
        ok = isinstance(org, str) and "/" not in org and check_repo_id(f"{org}/x")
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"org={org!r} is not a Hub user or organization name ({_RULE}, no '/')")
    return org


def suite_model_name(task: str, artifact: str, layers: int, profile: str, seed: int) -> str:
    """Repo name of one suite cell, e.g. `tinymem-math-backdoor-4l-paper-s0`."""
    TinyMemDataConfig(task=task, artifact=artifact, profile=profile, seed=seed)  # validates the choices
    if not isinstance(layers, int) or layers < 1:
        raise ValueError(f"layers={layers!r} must be a positive integer")
    return f"tinymem-{task}-{artifact}-{layers}l-{profile}-s{seed}"


def dataset_config_name(cfg: TinyMemDataConfig) -> str:
    """Config name of a TinyMem dataset inside the dataset repo, e.g. `math-noise-paper-s0`."""
    return f"{cfg.task}-{cfg.artifact}-{cfg.profile}-s{cfg.seed}"
