"""The loss: the mean squared error, where every backward pass starts."""
import torch

from .checks import check_grad, check_input
from .module import Module


class MSE(Module):
    """Mean of (prediction - target)^2 over every element; backward gives d loss / d prediction."""

    def __init__(self):
        self.difference = None

    def forward(self, prediction, target):
        check_input(self, prediction, ndim=None)
        check_input(self, target, ndim=None)
        if prediction.shape != target.shape:
            raise ValueError(f"MSE: expected prediction and target of the same shape, "
                             f"got {tuple(prediction.shape)} and {tuple(target.shape)}")
        if prediction.dtype != target.dtype or prediction.device != target.device:
            raise ValueError(f"MSE: expected prediction and target of the same dtype and device, "
                             f"got {prediction.dtype} on {prediction.device} "
                             f"and {target.dtype} on {target.device}")
        self.difference = prediction - target
        return (self.difference ** 2).mean()

    def backward(self, grad=1.0):
        """d loss / d prediction, times ``grad`` (d final / d loss: a number or a 0-d tensor)."""
        if self.difference is None:
            raise RuntimeError("MSE.backward called before forward")
        if isinstance(grad, torch.Tensor):
            check_grad(self, grad, (), self.difference.dtype)
        elif isinstance(grad, bool) or not isinstance(grad, (int, float)):
            raise ValueError(f"MSE.backward: expected a number or a 0-d tensor, got {grad!r:.80}")
        return self.difference * (2.0 / self.difference.numel()) * grad
