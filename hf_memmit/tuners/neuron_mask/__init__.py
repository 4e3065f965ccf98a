from .config import NeuronMaskConfig
from .layer import NeuronMaskLayer, NeuronMaskLinear
from .model import NeuronMaskModel

__all__ = ["NeuronMaskConfig", "NeuronMaskLayer", "NeuronMaskLinear", "NeuronMaskModel"]
