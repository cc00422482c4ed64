"""Upsampling: nearest-neighbour upsampling, and the course's block of it and a convolution."""
from . import fast
from .checks import check_grad, check_grad_saved, check_input, pair
from .conv import Conv2d
from .module import Module, Saved


class NearestUpsampling(Module):
    """Repeat every pixel s times along each axis; backward sums each s x s block (sum-pooling)."""

    def __init__(self, scale_factor):
        self.scale_factor = pair(scale_factor, "scale_factor", "NearestUpsampling")
        self.input_shape = self.output_shape = self.dtype = None

    def forward(self, x):
        check_input(self, x)
        sh, sw = self.scale_factor
        out = x.repeat_interleave(sh, dim=2).repeat_interleave(sw, dim=3)
        self.input_shape, self.output_shape, self.dtype = x.shape, out.shape, x.dtype
        return out

    def backward(self, grad):
        check_grad(self, grad, self.output_shape, self.dtype)
        n, c, height, width = self.input_shape
        sh, sw = self.scale_factor
        # Every input pixel was copied to one s x s block, so its gradient is that block's sum: the
        # same as a stride-s convolution with a kernel of ones.
        return grad.reshape(n, c, height, sh, width, sw).sum((3, 5))

    def extra_repr(self):
        return f"scale_factor={self.scale_factor}"


class Upsampling(Module):
    """Nearest upsampling followed by a convolution (the course's "Upsampling" block).

    With scale 2, a 3x3 kernel, padding 1, stride 1 and dilation 1 (the denoiser's setting) it
    hands over to the fused computation of chapter 8 (``nn/fast/``), the same function computed
    faster, without building the upsampled map. Set ``fast`` to False to always run
    ``NearestUpsampling`` and then ``Conv2d`` (chapter 5).
    """

    def __init__(self, in_channels, out_channels, kernel_size, scale_factor=2, stride=1, padding=0,
                 dilation=1, bias=True):
        try:
            self.upsample = NearestUpsampling(scale_factor)
            self.conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
                               bias)
        except ValueError as error:   # say which block the bad argument was given to
            raise ValueError(f"Upsampling: {error}") from None
        self.fast = True          # False: always the two modules of chapter 5
        self.force_form = None    # for tests and benchmarks (``fast.upsampling_form``)
        self.saved = None

    @property
    def weight(self):
        return self.conv.weight

    @property
    def bias(self):
        return self.conv.bias

    def named_param(self):
        return [(f"conv.{name}", parameter, gradient)
                for name, parameter, gradient in self.conv.named_param()]

    def forward(self, x):
        check_input(self, x, channels=self.conv.in_channels)
        if fast.upsampling_form(self):                # chapter 8: the same function, faster
            return fast.upsampling_forward(self, x)
        out = self.conv.forward(self.upsample.forward(x))
        self.saved = Saved("upsample, convolve", x, out.shape)
        return out

    def backward(self, grad):
        check_grad_saved(self, grad, self.saved)
        if self.saved.form == "fused":               # the backward pass of chapter 8's form
            return fast.upsampling_backward(self, grad)
        return self.upsample.backward(self.conv.backward(grad))

    def extra_repr(self):
        return f"scale_factor={self.upsample.scale_factor}, conv={self.conv!r}"
