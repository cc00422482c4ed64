"""The from-scratch framework: only tensor methods, torch.empty/cat/arange, fold and unfold.

One job per file; the faster forms of chapter 8 live in ``fast/``, behind one line per layer.
"""
from .activation import LeakyReLU, ReLU, Sigmoid
from .containers import Concat, Residual, Sequential
from .conv import Conv2d
from .loss import MSE
from .module import Module
from .optim import SGD, Adam
from .pool import MaxPool2d
from .transposed import ConvTranspose2d
from .upsampling import NearestUpsampling, Upsampling

__all__ = ["Module", "Sequential", "Concat", "Residual", "Conv2d", "ConvTranspose2d",
           "NearestUpsampling", "Upsampling", "MaxPool2d", "ReLU", "LeakyReLU", "Sigmoid", "MSE",
           "SGD", "Adam"]
