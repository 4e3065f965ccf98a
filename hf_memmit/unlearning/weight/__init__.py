"""Weight-level unlearning methods: each fits a `WeightMaskConfig` adapter (one bool mask per targeted weight)."""

from .balanced_subnet import BalancedSubnetConfig, fit_balanced_subnet
from .durable import DurableAggConfig, DurableConfig, fit_durable
from .greedy import GreedyConfig, fit_greedy
from .sou import SecondOrderUnlearningConfig, fit_sou
from .subnet import SubnetConfig, fit_subnet

__all__ = [
    "BalancedSubnetConfig", "DurableAggConfig", "DurableConfig", "GreedyConfig", "SecondOrderUnlearningConfig",
    "SubnetConfig", "fit_balanced_subnet", "fit_durable", "fit_greedy", "fit_sou", "fit_subnet",
]
