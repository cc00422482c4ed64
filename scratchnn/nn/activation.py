"""Element-wise activations and the mean-squared-error loss."""
import torch

from .module import Module, check_grad, check_grad_like, check_input


class ReLU(Module):
    """max(0, x); its derivative is 1 where x > 0 and 0 elsewhere (0 at x = 0, as PyTorch)."""

    def __init__(self):
        self.output = None

    def forward(self, x):
        check_input(self, x, ndim=None)
        self.output = x.clamp(min=0)
        return self.output

    def backward(self, grad):
        check_grad_like(self, grad, self.output)
        # The derivative is 1 where the output is positive and 0 where it is 0: the output's sign.
        # (``mul_`` multiplies in place the new tensor that ``sign`` returned: one allocation.)
        return self.output.sign().mul_(grad)


class LeakyReLU(Module):
    """x where x > 0, negative_slope * x elsewhere (torch's default slope 0.01).

    Unlike ReLU it never blocks the gradient completely: a unit that is negative for every input
    still learns, at ``negative_slope`` times the rate.
    """

    def __init__(self, negative_slope=0.01):
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)) \
                or not negative_slope == negative_slope:
            raise ValueError(f"LeakyReLU: expected negative_slope to be a number, "
                             f"got {negative_slope!r}")
        self.negative_slope = float(negative_slope)
        self.input = None

    def forward(self, x):
        check_input(self, x, ndim=None)
        self.input = x
        # For a slope of at most 1 the output is max(x, slope * x): x wins where x > 0, slope * x
        # elsewhere. It is computed as slope * x clamped from below by x, in place (for a slope
        # above 1, from above): two passes, where ``where`` with a mask of x > 0 takes three
        # slower ones.
        out = x * self.negative_slope
        return out.clamp_(min=x) if self.negative_slope <= 1 else out.clamp_(max=x)

    def backward(self, grad):
        check_grad_like(self, grad, self.input)
        # The gradient passes where x > 0 (there the sign of max(x, 0) is 1) and is scaled
        # elsewhere (sign 0, including x = 0, as torch): passed + slope * (grad - passed).
        passed = self.input.clamp(min=0).sign_().mul_(grad)
        return (grad - passed).mul_(self.negative_slope).add_(passed)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """1 / (1 + exp(-x)), computed so that no exponential can overflow, for any finite x."""

    def __init__(self):
        self.output = None

    def forward(self, x):
        check_input(self, x, ndim=None)
        # exp(-|x|) lies in (0, 1]: use 1/(1+e) for x >= 0 and the equal e/(1+e) for x < 0.
        e = (-x.abs()).exp()
        self.output = (1 / (1 + e)).where(x >= 0, e / (1 + e))
        return self.output

    def backward(self, grad):
        check_grad_like(self, grad, self.output)
        return grad * self.output * (1 - self.output)  # sigma' = sigma (1 - sigma)


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
