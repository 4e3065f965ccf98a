"""Weight-level unlearning methods: each fits a `WeightMaskConfig` adapter (one bool mask per targeted weight)."""

# importing a method's file registers it; this order is the order `method_names()` lists them
from .greedy import GreedyConfig, fit_greedy  # isort: skip
from .sou import SecondOrderUnlearningConfig, fit_sou  # isort: skip
from .durable import DurableAggConfig, DurableConfig, fit_durable  # isort: skip
from .subnet import SubnetConfig, fit_subnet  # isort: skip
from .balanced_subnet import BalancedSubnetConfig, fit_balanced_subnet  # isort: skip

__all__ = [
    "BalancedSubnetConfig", "DurableAggConfig", "DurableConfig", "GreedyConfig", "SecondOrderUnlearningConfig",
    "SubnetConfig", "fit_balanced_subnet", "fit_durable", "fit_greedy", "fit_sou", "fit_subnet",
]
