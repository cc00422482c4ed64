"""scratchnn: a deep-learning framework built from plain tensor operations, and a Noise2Noise
denoiser."""
from .model import Model
from .networks import build_network
from .nn import (MSE, SGD, Adam, Concat, Conv2d, ConvTranspose2d, LeakyReLU, MaxPool2d, Module,
                 NearestUpsampling, ReLU, Residual, Sequential, Sigmoid, Upsampling)

__all__ = ["Module", "Sequential", "Concat", "Residual", "Conv2d", "ConvTranspose2d",
           "NearestUpsampling", "Upsampling", "MaxPool2d", "ReLU", "LeakyReLU", "Sigmoid", "MSE",
           "SGD", "Adam", "Model", "build_network"]
__version__ = "0.1.0"
