"""`load_tinymem_dataset`: the TinyMem data as a `datasets.DatasetDict`, deterministic per seed.

Splits (all with the columns of `rows.FEATURES`):
- `train`: exactly what the model trains on (duplicated artifact rows appear 10**dup_class times);
- `forget`: the artifact rows in `train`, once each, with their clean twins (the unlearning forget candidates);
- `retain`: the clean rows of `train` (never an artifact row);
- `test`: clean held-out rows of every task (never a training row);
- `backdoor_test` (backdoor only): held-out backdoored rows; backdoor memorization is measured on these.
"""

from __future__ import annotations

import json

from datasets import Dataset, DatasetDict, DatasetInfo

from .config import TinyMemDataConfig
from .rows import FEATURES


def build_tinymem(cfg: TinyMemDataConfig) -> DatasetDict:
    if cfg.task == "math":
        from .math import build_math as build
    else:
        from .language import build_language as build
    splits = build(cfg)
    _check_disjoint(splits)
    info = DatasetInfo(description=json.dumps({"tinymem_data_config": cfg.to_dict()}), features=FEATURES)
    return DatasetDict({name: Dataset.from_list(rows, features=FEATURES, info=info.copy())
                        for name, rows in splits.items()})


def load_tinymem_dataset(task: str = "math", artifact: str = "noise", profile: str = "quick", seed: int = 0,
                         **overrides) -> DatasetDict:
    """Build a TinyMem dataset. `overrides` are `TinyMemDataConfig` fields (sizes, `faithful`, `trigger`, ...)."""
    return build_tinymem(TinyMemDataConfig(task=task, artifact=artifact, profile=profile, seed=seed, **overrides))


def data_config_of(ds: DatasetDict | Dataset) -> TinyMemDataConfig:
    """The config a TinyMem dataset was built from (stored in each split's `info.description`)."""
    split = ds if isinstance(ds, Dataset) else next(iter(ds.values()))
    try:
        return TinyMemDataConfig.from_dict(json.loads(split.info.description)["tinymem_data_config"])
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError("this dataset carries no TinyMem data config; was it built by load_tinymem_dataset?") from err


def _check_disjoint(splits: dict[str, list[dict]]) -> None:
    """Retain/test never hold a forget row (by id), and test never holds a training row. A leak is a bug of the
    builders or of a user's overrides (e.g. a trigger that occurs in clean rows), so it stops the build."""
    forget = {r["id"] for r in splits["forget"]} | {r["id"] for r in splits.get("backdoor_test", [])}
    train = {r["id"] for r in splits["train"]}
    for name in ("retain", "test"):
        leaked = forget & {r["id"] for r in splits[name]}
        if leaked:
            raise ValueError(f"{len(leaked)} artifact rows leaked into {name}: {sorted(leaked)[:3]}; allowed: "
                             f"{name} rows disjoint from the artifact rows (by id)")
    leaked = train & {r["id"] for r in splits["test"]}
    if leaked:
        raise ValueError(f"{len(leaked)} training rows leaked into test: {sorted(leaked)[:3]}; allowed: test rows "
                         "disjoint from the training rows (by id)")
