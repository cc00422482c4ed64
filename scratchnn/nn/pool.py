"""Max-pooling: keep the largest value of each window; its gradient goes to that value alone."""
from torch.nn.functional import fold, unfold

from . import fast
from .checks import check_grad_saved, check_input, pair
from .module import Module, Saved


class MaxPool2d(Module):
    """torch.nn.MaxPool2d(kernel_size, stride=None, padding=0): stride defaults to the kernel.

    The input is padded with -inf (padding never wins a window), every window is unfolded into a
    column, and the largest entry of each column is the output. ``backward`` puts each output
    gradient at the position of its window's maximum (the first one, as torch, when several tie)
    and ``fold`` adds them up: where windows overlap, one input can receive several gradients.

    Windows that do not overlap (kernel = stride, no padding: the U-Net's 2x2 pooling) hand over
    to the patches of chapter 8 (``nn/fast/``), unless ``fast`` is False.
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel_size = pair(kernel_size, "kernel_size", "MaxPool2d")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", "MaxPool2d")
        self.padding = pair(padding, "padding", "MaxPool2d", minimum=0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"MaxPool2d: padding should be at most half the kernel size, "
                             f"got padding={self.padding} and kernel_size={self.kernel_size}")
        self.fast = True
        self.saved = None

    def forward(self, x):
        check_input(self, x)
        n, c, height, width = x.shape
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if height + 2 * ph < kh or width + 2 * pw < kw:
            raise ValueError(f"MaxPool2d: input of spatial size {(height, width)} (padded "
                             f"{(height + 2 * ph, width + 2 * pw)}) is smaller than the kernel "
                             f"{self.kernel_size}")
        if fast.max_pool_form(self):                 # chapter 8's patches: the same, faster
            return fast.max_pool_forward(self, x)
        out_h = (height + 2 * ph - kh) // self.stride[0] + 1
        out_w = (width + 2 * pw - kw) // self.stride[1] + 1
        padded = x.new_full((n * c, 1, height + 2 * ph, width + 2 * pw), float("-inf"))
        padded[:, 0, ph:ph + height, pw:pw + width] = x.reshape(n * c, height, width)
        columns = unfold(padded, self.kernel_size, stride=self.stride)      # (N*C, kh*kw, L)
        out, argmax = columns.max(dim=1)                                     # (N*C, L)
        self.saved = Saved("unfold", x, (n, c, out_h, out_w), kept=argmax)
        return out.reshape(n, c, out_h, out_w)

    def backward(self, grad):
        check_grad_saved(self, grad, self.saved)
        if self.saved.form != "unfold":              # the backward pass of chapter 8's form
            return fast.max_pool_backward(self, grad)
        n, c, height, width = self.saved.input.shape
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        flat = grad.reshape(n * c, 1, -1)                                    # (N*C, 1, L)
        columns = flat.new_zeros(n * c, kh * kw, flat.shape[2])
        columns.scatter_(1, self.saved.kept.unsqueeze(1), flat)              # one per column
        padded = fold(columns, (height + 2 * ph, width + 2 * pw), self.kernel_size,
                      stride=self.stride)                                     # overlaps add up
        return padded[:, 0, ph:ph + height, pw:pw + width].reshape(n, c, height, width)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
