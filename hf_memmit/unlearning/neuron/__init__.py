"""Neuron-level unlearning methods (after MemPi, Chang et al. 2024): each scores the MLP units on the forget rows
([n_layer, d_ff]) and fits a `NeuronMaskConfig` adapter that drops the top-scoring units."""

from .config import NeuronMethodConfig
from .scores import neuron_scores

# importing a method's file registers it; this order is the order `method_names()` lists them
from .zero import ZeroConfig, fit_zero, zero_scores  # isort: skip
from .act import ActConfig, act_scores, fit_act  # isort: skip
from .slim import SlimConfig, fit_slim, slim_scores  # isort: skip
from .hard_concrete import HardConcreteConfig, fit_hard_concrete, hard_concrete_scores  # isort: skip
from .integrated_gradients import IntegratedGradientsConfig, fit_ig, ig_scores  # isort: skip

__all__ = [
    "ActConfig", "HardConcreteConfig", "IntegratedGradientsConfig", "NeuronMethodConfig", "SlimConfig", "ZeroConfig",
    "act_scores", "fit_act", "fit_hard_concrete", "fit_ig", "fit_slim", "fit_zero", "hard_concrete_scores",
    "ig_scores", "neuron_scores", "slim_scores", "zero_scores",
]
