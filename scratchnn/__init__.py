"""scratchnn: a deep-learning framework built from plain tensor operations, and a Noise2Noise
denoiser."""
from .model import Model
from .networks import build_network
from .nn import (MSE, SGD, Adam, Conv2d, Module, NearestUpsampling, ReLU, Sequential, Sigmoid,
                 Upsampling)

__all__ = ["Module", "Sequential", "Conv2d", "NearestUpsampling", "Upsampling", "ReLU", "Sigmoid",
           "MSE", "SGD", "Adam", "Model", "build_network"]
__version__ = "0.1.0"
