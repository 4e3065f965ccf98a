"""The one table of train-time regularizers: name -> config class -> `Trainer` subclass.

A leaf module: each regularizer's own file declares itself with `register_regularizer(...)`, and
`hf_memmit.trainers` imports those files, so `hf-memmit train --regularizer NAME --set KEY=VALUE` offers every
registered one without a list of its own. Every registered trainer takes its config as `method_config=`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from ..utils import check_choice

NONE = "none"  # plain training: transformers.Trainer, no regularizer


@dataclass(frozen=True)
class Regularizer:
    name: str
    config_class: type
    trainer_class: type
    data_collator: Callable | None = None  # builds the trainer's own collator (None: the caller's)


REGULARIZERS: dict[str, Regularizer] = {}


def register_regularizer(name: str, config_class: type, trainer_class: type, *,
                         data_collator: Callable | None = None) -> Regularizer:
    """Declare a regularizer: `trainer_class(..., method_config=config_class(**options))` trains with it.
    `data_collator`, if given, is called with no argument for the collator the trainer needs instead of the
    caller's (e.g. MemSinks' per-token sequence ids)."""
    if not isinstance(name, str) or not name or name == NONE:
        raise ValueError(f"name={name!r} is not a regularizer name; allowed: a non-empty string other than {NONE!r}")
    is_config = isinstance(config_class, type) and dataclasses.is_dataclass(config_class)
    if not is_config or not isinstance(trainer_class, type):
        raise TypeError(f"config_class={config_class!r}, trainer_class={trainer_class!r}; allowed: a dataclass "
                        "config and a transformers.Trainer subclass")
    REGULARIZERS[name] = Regularizer(name, config_class, trainer_class, data_collator)
    return REGULARIZERS[name]


def unregister_regularizer(name: str) -> Regularizer:
    get_regularizer(name)
    return REGULARIZERS.pop(name)


def regularizer_names() -> list[str]:
    """`none` (plain training) and every registered regularizer, in registration order."""
    return [NONE, *REGULARIZERS]


def get_regularizer(name: str) -> Regularizer | None:
    """The record of a registered regularizer; None for `none`."""
    check_choice("regularizer", name, regularizer_names())
    return REGULARIZERS.get(name)


def regularizer_trainer(name: str, options: dict) -> tuple[type | None, dict, dict]:
    """(Trainer subclass, its kwargs, the record for the run's summary) of a regularizer; `options` are fields
    of its config (None values: the config's default). Raises ValueError on a bad name or value."""
    regularizer = get_regularizer(name)
    options = {k: v for k, v in options.items() if v is not None}
    if regularizer is None:
        if options:
            raise ValueError(f"regularizer={NONE!r} takes no options, got {', '.join(sorted(options))}; allowed: "
                             f"options with one of {', '.join(REGULARIZERS)}")
        return None, {}, {"regularizer": NONE}
    fields = [f.name for f in dataclasses.fields(regularizer.config_class)]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(fields)}")
    config = regularizer.config_class(**options)
    kwargs = {"method_config": config}
    if regularizer.data_collator is not None:
        kwargs["data_collator"] = regularizer.data_collator()
    return regularizer.trainer_class, kwargs, {"regularizer": name, "regularizer_config": dataclasses.asdict(config)}
