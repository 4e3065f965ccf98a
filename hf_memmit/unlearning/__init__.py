"""Unlearning as PEFT adapters: one entry point, `unlearn`, and one config class per method."""

from .api import unlearn
from .data import Rows, as_rows, check_disjoint, row_losses
from .registry import METHODS, Method, get_method, make_config, method_names
from .weight import (
    BalancedSubnetConfig,
    DurableAggConfig,
    DurableConfig,
    GreedyConfig,
    SecondOrderUnlearningConfig,
    SubnetConfig,
)

__all__ = [
    "METHODS", "BalancedSubnetConfig", "DurableAggConfig", "DurableConfig", "GreedyConfig", "Method", "Rows",
    "SecondOrderUnlearningConfig", "SubnetConfig", "as_rows", "check_disjoint", "get_method", "make_config",
    "method_names", "row_losses", "unlearn",
]
