"""The from-scratch framework: only tensor methods, torch.empty/cat/arange, fold and unfold."""
from .activation import MSE, LeakyReLU, ReLU, Sigmoid
from .conv import Conv2d, NearestUpsampling, Upsampling
from .module import Concat, Module, Residual, Sequential
from .optim import SGD, Adam
from .pool import MaxPool2d
from .transposed import ConvTranspose2d

__all__ = ["Module", "Sequential", "Concat", "Residual", "Conv2d", "ConvTranspose2d",
           "NearestUpsampling", "Upsampling", "MaxPool2d", "ReLU", "LeakyReLU", "Sigmoid", "MSE",
           "SGD", "Adam"]
