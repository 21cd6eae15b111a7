"""idfzip: lossless image compression with Integer Discrete Flows."""

from .model import FlowConfig, IntegerDiscreteFlow, Latents

__all__ = ["FlowConfig", "IntegerDiscreteFlow", "Latents"]
__version__ = "0.1.0"
