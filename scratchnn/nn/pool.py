"""Max-pooling: keep the largest value of each window; its gradient goes to that value alone."""
from torch.nn.functional import fold, unfold

from .module import Module, check_grad, check_input, pair
from .rows import from_patches, is_patchwise, to_patches


class MaxPool2d(Module):
    """torch.nn.MaxPool2d(kernel_size, stride=None, padding=0): stride defaults to the kernel.

    The input is padded with -inf (padding never wins a window), every window is unfolded into a
    column, and the largest entry of each column is the output. ``backward`` puts each output
    gradient at the position of its window's maximum (the first one, as torch, when several tie)
    and ``fold`` adds them up: where windows overlap, one input can receive several gradients.

    Windows that do not overlap (kernel = stride, no padding: the U-Net's 2x2 pooling) run on
    channels-last patches instead (``rows.py``), the same function without the (N*C)-image unfold.
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel_size = pair(kernel_size, "kernel_size", "MaxPool2d")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", "MaxPool2d")
        self.padding = pair(padding, "padding", "MaxPool2d", minimum=0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"MaxPool2d: padding should be at most half the kernel size, "
                             f"got padding={self.padding} and kernel_size={self.kernel_size}")
        self.input_shape = self.argmax = self.output_shape = self.dtype = None
        self.patchwise = False

    def forward(self, x):
        check_input(self, x)
        n, c, height, width = x.shape
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if height + 2 * ph < kh or width + 2 * pw < kw:
            raise ValueError(f"MaxPool2d: input of spatial size {(height, width)} (padded "
                             f"{(height + 2 * ph, width + 2 * pw)}) is smaller than the kernel "
                             f"{self.kernel_size}")
        self.input_shape, self.dtype = x.shape, x.dtype
        out_h = (height + 2 * ph - kh) // self.stride[0] + 1
        out_w = (width + 2 * pw - kw) // self.stride[1] + 1
        self.output_shape = (n, c, out_h, out_w)
        self.patchwise = is_patchwise(self.kernel_size, self.stride, self.padding, (1, 1))
        if self.patchwise:
            patches = to_patches(x, self.kernel_size).reshape(-1, kh * kw, c)  # (N*L, taps, C)
            out, self.argmax = patches.max(dim=1)
            return out.reshape(n, out_h, out_w, c).permute(0, 3, 1, 2)
        padded = x.new_full((n * c, 1, height + 2 * ph, width + 2 * pw), float("-inf"))
        padded[:, 0, ph:ph + height, pw:pw + width] = x.reshape(n * c, height, width)
        columns = unfold(padded, self.kernel_size, stride=self.stride)      # (N*C, kh*kw, L)
        out, self.argmax = columns.max(dim=1)                                # (N*C, L)
        return out.reshape(self.output_shape)

    def backward(self, grad):
        check_grad(self, grad, self.output_shape, self.dtype)
        n, c, height, width = self.input_shape
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if self.patchwise:
            rows = grad.permute(0, 2, 3, 1).reshape(-1, 1, c)                 # (N*L, 1, C)
            patches = rows.new_zeros(rows.shape[0], kh * kw, c)
            patches.scatter_(1, self.argmax.unsqueeze(1), rows)
            return from_patches(patches.reshape(rows.shape[0], -1), self.input_shape,
                                self.kernel_size)
        flat = grad.reshape(n * c, 1, -1)                                    # (N*C, 1, L)
        columns = flat.new_zeros(n * c, kh * kw, flat.shape[2])
        columns.scatter_(1, self.argmax.unsqueeze(1), flat)                  # one entry per column
        padded = fold(columns, (height + 2 * ph, width + 2 * pw), self.kernel_size,
                      stride=self.stride)                                     # overlaps add up
        return padded[:, 0, ph:ph + height, pw:pw + width].reshape(self.input_shape)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
