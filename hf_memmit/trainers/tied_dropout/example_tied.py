"""Example-tied dropout (Maini et al., ICML 2023) on transformer MLP hidden units.

Each training example owns a fixed random `p_mem` share of the memorization units, keyed by a hash of its
id (the TinyMem `id` column by default); the first `p_gen` of each MLP's hidden units are general and
always on. Features are masked, not sequence positions (the released GPT-2 port masked the wrong dimension),
and at evaluation the memorization units are dropped (`drop`, with the reference's (p_gen+p_mem)/p_gen
rescale by default). Built on the tied-dropout core that MemSinks shares (`tied_dropout/`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from transformers.data.data_collator import default_data_collator

from ..registry import register_regularizer
from .config import TiedDropoutConfig
from .keys import key_of
from .trainer import TiedDropoutTrainer


@dataclass
class ExampleTiedDropoutConfig:
    """Args:
        p_gen: fraction of MLP hidden units that are general (always on), in (0, 1]. Default 0.2 as TinyMem's
            port (the reference's module default).
        p_mem: share of the memorization units each example owns, in (0, 1]. Default 0.1 (idem).
        key_column: dataset column holding each example's id (any value; hashed with blake2b).
        eval_mode: `drop` (memorization units off, the paper's result), `all` (their mean) or `seq`.
        rescale: general-unit scale when dropping: `code` ((p_gen+p_mem)/p_gen, the reference), `none`, `mass`.
        layout, salt, target_modules: as `TiedDropoutConfig`.
    """

    p_gen: float = 0.2
    p_mem: float = 0.1
    key_column: str = "id"
    eval_mode: str = "drop"
    rescale: str = "code"
    layout: str = "first"
    salt: int = 0
    target_modules: str | None = None

    def __post_init__(self):
        self.to_tied()  # the core config validates the shared fields (one place)
        if not self.key_column or not isinstance(self.key_column, str):
            raise ValueError(f"key_column={self.key_column!r} must be a non-empty column name")

    def to_tied(self) -> TiedDropoutConfig:
        return TiedDropoutConfig(p_gen=self.p_gen, p_mem=self.p_mem, eval_mode=self.eval_mode, rescale=self.rescale,
                                 layout=self.layout, salt=self.salt, target_modules=self.target_modules)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def example_keys(values) -> torch.Tensor:
    """LongTensor of tied-dropout keys, one per example id (the same id gives the same key everywhere)."""
    return torch.tensor([key_of(v) for v in values], dtype=torch.long)


class ExampleKeyCollator:
    """Takes the id column out of each row, collates the rest with `collator`, and adds the rows' keys as
    `tied_keys`. Rows without the column pass through without keys (evaluation needs none); the trainer
    raises if a training batch has none."""

    def __init__(self, collator, key_column: str = "id"):
        self.collator, self.key_column = collator, key_column

    def __call__(self, features: list[dict]) -> dict:
        have = [self.key_column in f for f in features]
        ids = [f[self.key_column] for f in features] if all(have) else None
        rest = [{k: v for k, v in f.items() if k != self.key_column} for f in features]
        batch = dict(self.collator(rest))
        if ids is not None:
            batch[TiedDropoutTrainer.keys_input] = example_keys(ids)
        return batch


class ExampleTiedDropoutTrainer(TiedDropoutTrainer):
    """`Trainer` with example-tied dropout: `ExampleTiedDropoutTrainer(model=..., args=..., train_dataset=...,
    data_collator=..., method_config=ExampleTiedDropoutConfig(p_gen=..., p_mem=...))`.

    The dataset keeps its id column (`method_config.key_column`); the given collator sees the other columns
    only. A training batch without ids raises instead of training a plain model. Evaluation (and the model
    after training, in eval mode) drops the memorization units; switch modes with
    `hf_memmit.trainers.tied_dropout.tied_dropout_mode(model, "all")`.
    """

    def __init__(self, *args, method_config: ExampleTiedDropoutConfig | None = None, **kwargs):
        self.method_config = method_config or ExampleTiedDropoutConfig()
        super().__init__(*args, method_config=self.method_config.to_tied(), **kwargs)
        column = self.method_config.key_column
        self.data_collator = self.keep_columns(
            ExampleKeyCollator(self.data_collator or default_data_collator, column), [column])

    def missing_keys_message(self, inputs: dict) -> str:
        return (f"ExampleTiedDropoutTrainer: the training batch has no example ids: column "
                f"{self.method_config.key_column!r} is missing from the dataset rows (batch keys: {sorted(inputs)}). "
                "Each example's units come from its id; add the column or set method_config.key_column")

register_regularizer("example_tied_dropout", ExampleTiedDropoutConfig, ExampleTiedDropoutTrainer)

__all__ = ["ExampleKeyCollator", "ExampleTiedDropoutConfig", "ExampleTiedDropoutTrainer", "example_keys"]
