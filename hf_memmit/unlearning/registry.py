"""The one table of unlearning methods: name -> config class -> fit function.

A leaf module: each method's own file declares itself here with `register_method(ConfigClass, fit, ...)`, and
`hf_memmit.unlearning` imports those files, so adding a method is adding one file (and its import).

A method's name is its config class's `method` default (also what adapter_config.json records), so the
name is written once. A fit function has the signature
`fit(peft_model, config, forget: Rows, retain: Rows | None, *, adapter_name, progress) -> None`
and leaves a fixed mask in the adapter `adapter_name`; one registered with `data_parallel=True` also takes
`split` (`hf_memmit.unlearning.parallel.Split`) and fits its share of every step under `accelerate launch`; one
registered with `deepspeed=True` also accepts a `DeepSpeedSplit` (fitting through a DeepSpeed ZeRO-3 engine). Neuron-level methods also have a score function
`score(model, config, forget: Rows, units, *, progress) -> Tensor [n_layer, d_ff]` (see `neuron_scores`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from peft import PeftConfig


@dataclass(frozen=True)
class Method:
    config_class: type
    fit: Callable
    needs_retain: bool = False
    score: Callable | None = None  # neuron-level methods: the attribution step alone
    data_parallel: bool = False  # fit takes `split` and shares each step's batch across processes
    deepspeed: bool = False  # fit also takes a `DeepSpeedSplit`: fits through a DeepSpeed engine (ZeRO-3)

    @property
    def name(self) -> str:
        return self.config_class.method


METHODS: dict[str, Method] = {}  # in registration order (the order `method_names` and the CLI list them)


def register_method(config_class: type, fit: Callable, *, needs_retain: bool = False,
                    score: Callable | None = None, data_parallel: bool = False, deepspeed: bool = False) -> Method:
    """Declare an unlearning method: `config_class` (a `peft.PeftConfig` dataclass whose `method` field
    default is the method's name) is fitted by `fit`. Registering the same config class again replaces
    its entry (a reloaded module); another class under a taken name is refused."""
    name = getattr(config_class, "method", None)
    if not isinstance(config_class, type) or not issubclass(config_class, PeftConfig) or not isinstance(name, str):
        raise TypeError(f"config_class={config_class!r} is not a method config; allowed: a PeftConfig subclass "
                        "with a `method: str` field default")
    if not callable(fit) or (score is not None and not callable(score)):
        raise TypeError(f"fit={fit!r}, score={score!r}; allowed: callables (score may be None)")
    taken = METHODS.get(name)
    if taken is not None and taken.config_class.__qualname__ != config_class.__qualname__:
        raise ValueError(f"method name {name!r} is already registered by {taken.config_class.__name__}; "
                         f"allowed: a new name (registered: {', '.join(METHODS)})")
    if deepspeed and not data_parallel:
        raise ValueError(f"{name!r}: deepspeed=True needs data_parallel=True (the DeepSpeed split is a data split)")
    METHODS[name] = Method(config_class, fit, needs_retain=needs_retain, score=score, data_parallel=data_parallel,
                           deepspeed=deepspeed)
    return METHODS[name]


def unregister_method(name: str) -> Method:
    """Remove a registered method (e.g. a throw-away one in a test); returns its record."""
    get_method(name)
    return METHODS.pop(name)


def method_names() -> list[str]:
    return list(METHODS)


def get_method(name_or_config) -> Method:
    """The method of a name ('balanced_subnet', 'hc') or of a config instance."""
    config = name_or_config if isinstance(name_or_config, PeftConfig) else None
    name = getattr(config, "method", None) if config is not None else name_or_config
    if name not in METHODS:
        got = type(config).__name__ if config is not None else repr(name)
        raise ValueError(f"unknown unlearning method {got}; allowed: {', '.join(METHODS)} "
                         f"({', '.join(m.config_class.__name__ for m in METHODS.values())})")
    method = METHODS[name]
    if config is not None and type(config) is not method.config_class:
        raise ValueError(f"config of type {type(config).__name__} for method {name!r}; allowed: "
                         f"{method.config_class.__name__}")
    return method


def make_config(name: str, **kwargs) -> PeftConfig:
    """A method's config from its name, e.g. for a CLI: make_config('durable', ratio=0.01). An option that is not
    a field of the method's config is a ValueError naming the fields (e.g. `ratio` for a LoRA method)."""
    config_class = get_method(name).config_class
    fields = sorted(f.name for f in dataclasses.fields(config_class) if f.init)
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(fields)}")
    return config_class(**kwargs)
