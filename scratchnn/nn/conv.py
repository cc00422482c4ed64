"""Convolution, from ``unfold`` (im2col), ``fold`` (col2im) and matrix products (chapters 3-4).

Shapes used throughout: input ``x`` is (N, C, H, W), the weight is (O, C, kh, kw) and the output
is (N, O, Ho, Wo) with ``L = Ho * Wo`` output positions.
"""
import math

import torch
from torch.nn.functional import fold, unfold

from . import fast
from .checks import check_bool, check_grad_saved, check_input, integer, pair
from .module import Module, Saved


def output_length(size, kernel, stride, padding, dilation):
    """Positions a dilated kernel takes along one axis (Dumoulin & Visin, relationship 15)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def convolve(x, weight, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """Cross-correlate ``x`` with ``weight`` as one matrix product; also return the unfolded input.

    ``unfold`` copies every receptive field into a column, giving (N, C*kh*kw, L); the weight,
    flattened to (O, C*kh*kw), multiplies all columns at once, giving (N, O, L).
    """
    kernel = tuple(weight.shape[2:])
    columns = unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
    out = weight.reshape(weight.shape[0], -1).matmul(columns)
    height = output_length(x.shape[2], kernel[0], stride[0], padding[0], dilation[0])
    width = output_length(x.shape[3], kernel[1], stride[1], padding[1], dilation[1])
    return out.reshape(x.shape[0], weight.shape[0], height, width), columns


def place_in_zeros(x, height, width, top, left, step=(1, 1)):
    """A zero tensor of spatial size height x width holding ``x`` from (top, left), every ``step``.

    With step 1 this is zero padding; with step s it also inserts s - 1 zeros between neighbours,
    which is how a strided convolution's output gradient is "dilated" back to stride 1.
    """
    out = x.new_zeros(x.shape[0], x.shape[1], height, width)
    bottom, right = top + step[0] * (x.shape[2] - 1) + 1, left + step[1] * (x.shape[3] - 1) + 1
    out[:, :, top:bottom:step[0], left:right:step[1]] = x
    return out


class Convolution(Module):
    """What Conv2d and ConvTranspose2d share: their arguments, checked; their weight, (out, in,
    kh, kw), and bias, initialised like torch.nn's; ``named_param``; the checks of an input. A
    transposed convolution is the transpose of the one from ``out_channels`` to ``in_channels``:
    its weight is (in, out, kh, kw), as in torch.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, bias,
                 transposed=False):
        name = type(self).__name__
        self.in_channels = integer(in_channels, "in_channels", name)
        self.out_channels = integer(out_channels, "out_channels", name)
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        self.stride = pair(stride, "stride", name)
        self.padding = pair(padding, "padding", name, minimum=0)
        check_bool(bias, "bias", name)
        rows, columns = ((self.in_channels, self.out_channels) if transposed
                         else (self.out_channels, self.in_channels))
        # U(-sqrt(k), sqrt(k)) with k = 1 / (columns * kh * kw), as torch.nn initialises both.
        bound = 1 / math.sqrt(columns * self.kernel_size[0] * self.kernel_size[1])
        self.weight = torch.empty(rows, columns, *self.kernel_size).uniform_(-bound, bound)
        self.weight_grad = self.weight.new_zeros(self.weight.shape)
        self.bias = torch.empty(self.out_channels).uniform_(-bound, bound) if bias else None
        self.bias_grad = self.bias.new_zeros(self.bias.shape) if bias else None
        self.fast = True    # False: always the path of chapters 3-5 and 9, never chapter 8's
        self.saved = None   # what the last forward pass keeps for backward: a ``Saved`` record

    def named_param(self):
        params = [("weight", self.weight, self.weight_grad)]
        if self.bias is not None:
            params.append(("bias", self.bias, self.bias_grad))
        return params

    def check(self, x, module=None):
        """The ValueErrors of ``forward``: an (N, in_channels, H, W) floating-point input, of the
        weight's dtype and on its device. ``module`` names a block that holds this one."""
        module = module or self
        check_input(module, x, channels=self.in_channels)
        if x.dtype != self.weight.dtype or x.device != self.weight.device:
            raise ValueError(f"{type(module).__name__}: expected input of dtype "
                             f"{self.weight.dtype} on {self.weight.device}, got {x.dtype} on "
                             f"{x.device}; move the module with .to()")


class Conv2d(Convolution):
    """2-D convolution with PyTorch's arguments and initialisation.

    ``backward_form`` chooses between the two derivations the book teaches: ``"fold"`` (col2im, the
    transpose of unfold; the default because it is faster) and ``"convolution"`` (the gradients
    written as convolutions of the stride-dilated output gradient).

    Where a faster form of the same function applies (chapter 8, ``nn/fast/``), ``forward`` and
    ``backward`` hand over to it, unless ``fast`` is False (``"convolution"`` sets it to False);
    ``force_form`` makes it run a given one, for tests and benchmarks (``fast.conv2d_form``).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True, backward_form="fold"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias)
        self.dilation = pair(dilation, "dilation", "Conv2d")
        if backward_form not in ("fold", "convolution"):
            raise ValueError(f"Conv2d: expected backward_form 'fold' or 'convolution', "
                             f"got {backward_form!r}")
        self.backward_form = backward_form
        self.fast = backward_form == "fold"
        self.force_form = None
        self.spares = fast.Spares()   # buffers the fast form reuses from call to call (ch. 8)

    def check(self, x, module=None):
        """``Convolution.check``, and an input no smaller than the dilated kernel."""
        super().check(x, module)
        for axis in (0, 1):
            padded = x.shape[2 + axis] + 2 * self.padding[axis]
            reach = self.dilation[axis] * (self.kernel_size[axis] - 1) + 1
            if padded < reach:
                raise ValueError(f"{type(module or self).__name__}: input of spatial size "
                                 f"{tuple(x.shape[2:])} (padded size {padded} on axis {axis}) "
                                 f"is smaller than the dilated kernel's extent {reach}")

    def forward(self, x):
        """The (N, O, Ho, Wo) output; one record, ``self.saved``, keeps what backward needs."""
        self.check(x)
        if fast.conv2d_form(self):                     # chapter 8: the same function, faster
            return fast.conv2d_forward(self, x)
        out, columns = convolve(x, self.weight, self.stride, self.padding, self.dilation)
        if self.bias is not None:
            out += self.bias.reshape(1, -1, 1, 1)
        self.saved = Saved("unfold", x, out.shape, kept=columns)
        return out

    def backward(self, grad):
        check_grad_saved(self, grad, self.saved)
        if self.bias is not None:
            # Each bias is added to every output of its channel. (The pixels are summed before
            # the batch: one sum over (0, 2, 3) at once runs up to 8x slower on CPU for some
            # channels-last layouts, measured in chapter 8.)
            self.bias_grad += grad.sum((2, 3)).sum(0)
        if self.saved.form != "unfold":                # the backward pass of chapter 8's form
            return fast.conv2d_backward(self, grad)
        if self.backward_form == "fold":
            return self.backward_by_fold(grad)
        return self.backward_by_convolution(grad)

    def backward_by_fold(self, grad):
        """Backward of the product ``out = W @ columns``; ``fold`` sums columns into pixels."""
        check_grad_saved(self, grad, self.saved)
        if self.saved.form != "unfold":   # a direct call after one of chapter 8's forms
            raise RuntimeError(f"Conv2d.backward_by_fold needs the unfold columns, but the last "
                               f"forward pass ran the fast form {self.saved.form!r}, which keeps "
                               f"none; set conv.fast = False before forward, or call "
                               f"conv.backward(grad), which follows any form")
        n, o = grad.shape[:2]
        columns, input_size = self.saved.kept, tuple(self.saved.input.shape[2:])
        grad = grad.reshape(n, o, -1)                                          # (N, O, L)
        weight_grad = grad.matmul(columns.transpose(1, 2)).sum(0)             # (O, C*kh*kw)
        self.weight_grad += weight_grad.reshape(self.weight.shape)
        grad_columns = self.weight.reshape(o, -1).t().matmul(grad)            # (N, C*kh*kw, L)
        return fold(grad_columns, input_size, self.kernel_size,
                    dilation=self.dilation, padding=self.padding, stride=self.stride)

    def backward_by_convolution(self, grad):
        """Both gradients as stride-1 convolutions of the stride-dilated output gradient."""
        check_grad_saved(self, grad, self.saved)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        (ph, pw), (dh, dw) = self.padding, self.dilation
        x = self.saved.input
        n, c, height, width = x.shape
        out_h, out_w = grad.shape[2:]
        # Up to the last row/column of the padded input a window reached; the rows after it are
        # never read (rows skipped *between* read ones get zero gradient by themselves).
        used_h, used_w = dh * (kh - 1) + sh * (out_h - 1) + 1, dw * (kw - 1) + sw * (out_w - 1) + 1
        padded = place_in_zeros(x, height + 2 * ph, width + 2 * pw, ph, pw)
        padded = padded[:, :, :used_h, :used_w]
        # Weight: correlate the input with the output gradient dilated by the stride; the batch is
        # summed by the matrix product. patches[n, c, l, k] = padded input under output l, tap k.
        patches = unfold(padded, (out_h, out_w), dilation=(sh, sw), stride=(dh, dw))
        patches = patches.reshape(n, c, out_h * out_w, kh * kw).permute(0, 2, 1, 3)
        patches = patches.reshape(-1, c * kh * kw)
        grad_rows = grad.transpose(0, 1).reshape(grad.shape[1], -1)          # (O, N*L)
        self.weight_grad += grad_rows.matmul(patches).reshape(self.weight.shape)
        # Input: full correlation of the padded, stride-dilated gradient with the 180-degree
        # flipped kernel. Padding dh*(kh-1) before the gradient makes it "full"; the padding
        # after it also covers the trailing rows the forward pass never read (zero gradient).
        reach_h, reach_w = dh * (kh - 1), dw * (kw - 1)
        spread = place_in_zeros(grad, height + 2 * ph + reach_h, width + 2 * pw + reach_w,
                                reach_h, reach_w, step=(sh, sw))
        flipped = self.weight.flip(2, 3).transpose(0, 1)                      # (C, O, kh, kw)
        grad_padded, _ = convolve(spread, flipped, dilation=(dh, dw))   # (N, C, H+2ph, W+2pw)
        return grad_padded[:, :, ph:ph + height, pw:pw + width]

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"bias={self.bias is not None}")
