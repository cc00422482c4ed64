"""The from-scratch framework: only tensor methods, torch.empty/cat/arange, fold and unfold."""
from .activation import MSE, ReLU, Sigmoid
from .conv import Conv2d, NearestUpsampling, Upsampling
from .module import Module, Sequential
from .optim import SGD, Adam

__all__ = ["Module", "Sequential", "Conv2d", "NearestUpsampling", "Upsampling", "ReLU", "Sigmoid",
           "MSE", "SGD", "Adam"]
