"""Element-wise activations: ReLU, LeakyReLU and Sigmoid."""
from .checks import check_grad_like, check_input
from .module import Module


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
        # The slope of the function at x: 1 where x > 0 (there the sign of max(x, 0) is 1) and
        # negative_slope elsewhere (sign 0, including x = 0, as torch). Built in place in one new
        # tensor, then multiplied by grad: five fast passes (``where`` runs slower on CPU).
        slope = self.input.clamp(min=0).sign_()
        return slope.mul_(1 - self.negative_slope).add_(self.negative_slope).mul_(grad)

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
