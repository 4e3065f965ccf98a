"""Loss-based unlearning methods as LoRA adapters: gradient ascent, GradDiff, NPO, SimNPO."""

from .config import LossMethodConfig

# importing a method's file registers it; this order is the order `method_names()` lists them
# isort: off
from .gradient_ascent import GradientAscentConfig
from .grad_diff import GradDiffConfig
from .npo import NPOConfig
from .simnpo import SimNPOConfig
# isort: on

__all__ = ["GradDiffConfig", "GradientAscentConfig", "LossMethodConfig", "NPOConfig", "SimNPOConfig"]
