"""Small networks and bookkeeping shared by the tests of ``scratchnn.nn``.

Test files import this module as ``helpers``: pytest puts ``tests/`` on ``sys.path`` because it
has no ``__init__.py`` (pytest's default "prepend" import mode).
"""
import torch

from scratchnn import nn
from scratchnn.reference import TorchLayers

# The largest errors the gradient tests saw; conftest.py prints them after the run.
# float64 errors are absolute, float32 errors relative to the reference's scale.
LARGEST_ERRORS = {"float64": 0.0, "float32": 0.0, "numerical": 0.0}


def small_network(layers=nn):
    """Every block of the course once, small enough for fast tests: (N, 3, H, W) -> 2H x 2W.

    Written once for a layer library, like the networks of ``scratchnn.networks``:
    ``scratchnn.nn`` gives the from-scratch network, ``TorchLayers`` its ``torch.nn`` twin with
    the same parameter names ``0.weight``, ``0.bias``, ``2.weight``, ``5.conv.weight``,
    ``5.conv.bias``.
    """
    return layers.Sequential(
        layers.Conv2d(3, 4, 2, stride=2), layers.ReLU(),
        layers.Conv2d(4, 4, 3, padding=1, bias=False), layers.ReLU(),
        layers.NearestUpsampling(2),
        layers.Upsampling(4, 3, 3, scale_factor=2, padding=1), layers.Sigmoid())


def twin_networks(seed=0, dtype=torch.float64):
    """``small_network`` from scratch and in ``torch.nn``, with the same weights, in ``dtype``."""
    torch.manual_seed(seed)
    ours = small_network(nn).to(dtype=dtype)
    theirs = small_network(TorchLayers).to(dtype=dtype)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs
