"""Unlearning as PEFT adapters: one entry point, `unlearn`, and one config class per method (six weight-level and
five neuron-level mask methods, four loss-based LoRA methods); `neuron_scores` gives a neuron-level method's
attributions alone.

Each method's file registers itself in `registry` when imported; the packages are imported in the order
`method_names()` lists them: weight-level, neuron-level, loss-based."""

from .api import unlearn
from .data import Rows, as_rows, check_disjoint, row_losses

# isort: off
from .weight import (
    BalancedSubnetConfig,
    DurableAggConfig,
    DurableConfig,
    GreedyConfig,
    SecondOrderUnlearningConfig,
    SubnetConfig,
)
from .neuron import (
    ActConfig,
    HardConcreteConfig,
    IntegratedGradientsConfig,
    NeuronMethodConfig,
    SlimConfig,
    ZeroConfig,
    neuron_scores,
)
from .loss import GradDiffConfig, GradientAscentConfig, LossMethodConfig, NPOConfig, SimNPOConfig
# isort: on

from .registry import METHODS, Method, get_method, make_config, method_names, register_method, unregister_method

__all__ = [
    "METHODS", "ActConfig", "BalancedSubnetConfig", "DurableAggConfig", "DurableConfig", "GradDiffConfig",
    "GradientAscentConfig", "GreedyConfig", "HardConcreteConfig", "IntegratedGradientsConfig", "LossMethodConfig", "Method", "NPOConfig", "NeuronMethodConfig", "Rows",
    "SecondOrderUnlearningConfig", "SimNPOConfig", "SlimConfig", "SubnetConfig", "ZeroConfig", "as_rows", "check_disjoint",
    "get_method", "make_config", "method_names", "neuron_scores", "register_method",
    "row_losses", "unlearn", "unregister_method",
]
