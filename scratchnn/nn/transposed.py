"""Transposed convolution: the backward pass of a convolution, used as a forward pass (chapter 9).

A convolution maps an (N, C, H, W) input to a smaller (N, O, Ho, Wo) output, and its input
gradient maps back from output size to input size (chapter 4). ``ConvTranspose2d`` *is* that
map: ``fold`` of a matrix product spreads every input pixel over a kh x kw block of the output,
``stride`` pixels apart, and sums where blocks overlap. Its own backward pass is therefore a
convolution: ``unfold`` and a matrix product.
"""
import math

import torch
from torch.nn.functional import fold, unfold

from .module import Module, check_bool, check_grad, check_input, integer, pair
from .rows import from_patches, is_patchwise, long_sum_product, patch_matrix, to_patches


class ConvTranspose2d(Module):
    """torch.nn.ConvTranspose2d(in, out, kernel_size, stride=1, padding=0, output_padding=0).

    The weight has shape (in, out, kh, kw), as in torch (the transpose of a convolution from
    ``out`` to ``in`` channels), and is initialised like torch's: U(-sqrt(k), sqrt(k)) with
    k = 1 / (out * kh * kw), the bias too. The output size is
    (H - 1) * stride - 2 * padding + kh + output_padding along each axis.
    A kernel equal to the stride (no padding), the U-Net's 2x2 stride-2 case, runs as one
    product on channels-last rows: every input pixel then owns its own output block.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, bias=True):
        name = "ConvTranspose2d"
        self.in_channels = integer(in_channels, "in_channels", name)
        self.out_channels = integer(out_channels, "out_channels", name)
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        self.stride = pair(stride, "stride", name)
        self.padding = pair(padding, "padding", name, minimum=0)
        self.output_padding = pair(output_padding, "output_padding", name, minimum=0)
        check_bool(bias, "bias", name)
        if any(extra >= step for extra, step in zip(self.output_padding, self.stride)):
            raise ValueError(f"{name}: output_padding must be smaller than the stride, got "
                             f"output_padding={self.output_padding} and stride={self.stride}")
        bound = 1 / math.sqrt(self.out_channels * self.kernel_size[0] * self.kernel_size[1])
        self.weight = torch.empty(self.in_channels, self.out_channels, *self.kernel_size)
        self.weight.uniform_(-bound, bound)
        self.weight_grad = self.weight.new_zeros(self.weight.shape)
        self.bias = torch.empty(self.out_channels).uniform_(-bound, bound) if bias else None
        self.bias_grad = self.bias.new_zeros(self.bias.shape) if bias else None
        self.input = self.output_shape = None

    def named_param(self):
        params = [("weight", self.weight, self.weight_grad)]
        if self.bias is not None:
            params.append(("bias", self.bias, self.bias_grad))
        return params

    def output_size(self, height, width):
        """Where the last block ends, minus the padding cut from each side, plus output_padding."""
        return tuple((size - 1) * s - 2 * p + k + extra for size, s, p, k, extra in zip(
            (height, width), self.stride, self.padding, self.kernel_size, self.output_padding))

    def patchwise(self):
        return (is_patchwise(self.kernel_size, self.stride, self.padding, (1, 1))
                and self.output_padding == (0, 0))

    def forward(self, x):
        check_input(self, x, channels=self.in_channels)
        if x.dtype != self.weight.dtype or x.device != self.weight.device:
            raise ValueError(f"ConvTranspose2d: expected input of dtype {self.weight.dtype} on "
                             f"{self.weight.device}, got {x.dtype} on {x.device}; move the "
                             f"module with .to()")
        n, _, height, width = x.shape
        size = self.output_size(height, width)
        if min(size) < 1:
            raise ValueError(f"ConvTranspose2d: input of spatial size {(height, width)} gives an "
                             f"empty output {size}; use less padding")
        self.input, self.output_shape = x, (n, self.out_channels, *size)
        if self.patchwise():
            # Each input pixel's row times the (C, kh*kw*O) matrix is its own output block.
            rows = x.permute(0, 2, 3, 1).reshape(-1, self.in_channels)
            blocks = rows.matmul(patch_matrix(self.weight).t())
            out = from_patches(blocks, self.output_shape, self.kernel_size)
        else:
            # columns[n, (o, i, j), l]: what input pixel l adds to output o at kernel tap (i, j).
            columns = self.weight.reshape(self.in_channels, -1).t().matmul(
                x.reshape(n, self.in_channels, -1))
            out = fold(columns, size, self.kernel_size, stride=self.stride, padding=self.padding)
        if self.bias is not None:
            out = out + self.bias.reshape(1, -1, 1, 1)
        return out

    def backward(self, grad):
        check_grad(self, grad, self.output_shape, self.weight.dtype)
        n, c, height, width = self.input.shape
        if self.bias is not None:
            self.bias_grad += grad.sum((0, 2, 3))
        if self.patchwise():
            blocks = to_patches(grad, self.kernel_size)                    # (N*H*W, kh*kw*O)
            rows = self.input.permute(0, 2, 3, 1).reshape(-1, c)
            weight_grad = long_sum_product(blocks, rows)                     # (kh*kw*O, C)
            kh, kw = self.kernel_size
            self.weight_grad += weight_grad.reshape(kh, kw, self.out_channels, c).permute(
                3, 2, 0, 1)
            input_rows = blocks.matmul(patch_matrix(self.weight))           # (N*H*W, C)
            return input_rows.reshape(n, height, width, c).permute(0, 3, 1, 2)
        # The adjoint of fold is unfold: each input pixel collects the gradient of its block.
        columns = unfold(grad, self.kernel_size, stride=self.stride, padding=self.padding)
        weight_grad = self.input.reshape(n, c, -1).matmul(columns.transpose(1, 2)).sum(0)
        self.weight_grad += weight_grad.reshape(self.weight.shape)
        input_grad = self.weight.reshape(c, -1).matmul(columns)             # (N, C, H*W)
        return input_grad.reshape(self.input.shape)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, "
                f"output_padding={self.output_padding}, bias={self.bias is not None}")
