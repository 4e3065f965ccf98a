from .config import WeightMaskConfig
from .layer import WeightMaskLayer, WeightMaskLinear
from .model import WeightMaskModel

__all__ = ["WeightMaskConfig", "WeightMaskLayer", "WeightMaskLinear", "WeightMaskModel"]
