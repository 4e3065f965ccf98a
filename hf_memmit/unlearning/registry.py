"""The one table of unlearning methods: name -> config class -> fit function.

A method's name is its config class's `method` default (also what adapter_config.json records), so the
name is written once. A fit function has the signature
`fit(peft_model, config, forget: Rows, retain: Rows | None, *, adapter_name, progress) -> None`
and leaves a fixed mask in the adapter `adapter_name`. Neuron-level methods also have a score function
`score(model, config, forget: Rows, units, *, progress) -> Tensor [n_layer, d_ff]` (see `neuron_scores`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from peft import PeftConfig

from .neuron import (
    ActConfig,
    HardConcreteConfig,
    IntegratedGradientsConfig,
    SlimConfig,
    ZeroConfig,
    act_scores,
    fit_act,
    fit_hard_concrete,
    fit_ig,
    fit_slim,
    fit_zero,
    hard_concrete_scores,
    ig_scores,
    slim_scores,
    zero_scores,
)
from .weight import (
    BalancedSubnetConfig,
    DurableAggConfig,
    DurableConfig,
    GreedyConfig,
    SecondOrderUnlearningConfig,
    SubnetConfig,
    fit_balanced_subnet,
    fit_durable,
    fit_greedy,
    fit_sou,
    fit_subnet,
)


@dataclass(frozen=True)
class Method:
    config_class: type
    fit: Callable
    needs_retain: bool = False
    score: Callable | None = None  # neuron-level methods: the attribution step alone

    @property
    def name(self) -> str:
        return self.config_class.method


METHODS: dict[str, Method] = {m.name: m for m in (
    Method(GreedyConfig, fit_greedy, needs_retain=True),
    Method(SecondOrderUnlearningConfig, fit_sou),
    Method(DurableConfig, fit_durable),
    Method(DurableAggConfig, fit_durable),
    Method(SubnetConfig, fit_subnet),
    Method(BalancedSubnetConfig, fit_balanced_subnet, needs_retain=True),
    Method(ZeroConfig, fit_zero, score=zero_scores),
    Method(ActConfig, fit_act, score=act_scores),
    Method(SlimConfig, fit_slim, score=slim_scores),
    Method(HardConcreteConfig, fit_hard_concrete, score=hard_concrete_scores),
    Method(IntegratedGradientsConfig, fit_ig, score=ig_scores),
)}


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
    """A method's config from its name, e.g. for a CLI: make_config('durable', ratio=0.01)."""
    return get_method(name).config_class(**kwargs)
