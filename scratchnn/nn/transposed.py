"""Transposed convolution: the backward pass of a convolution, used as a forward pass (chapter 9).

A convolution maps an (N, C, H, W) input to a smaller (N, O, Ho, Wo) output, and its input
gradient maps back from output size to input size (chapter 4). ``ConvTranspose2d`` *is* that
map: ``fold`` of a matrix product spreads every input pixel over a kh x kw block of the output,
``stride`` pixels apart, and sums where blocks overlap. Its own backward pass is therefore a
convolution: ``unfold`` and a matrix product.
"""
from torch.nn.functional import fold, unfold

from . import fast
from .checks import check_grad_saved, pair
from .conv import Convolution
from .module import Saved


class ConvTranspose2d(Convolution):
    """torch.nn.ConvTranspose2d(in, out, kernel_size, stride=1, padding=0, output_padding=0).

    The weight has shape (in, out, kh, kw), as in torch (``Convolution``). The output size is
    (H - 1) * stride - 2 * padding + kh + output_padding along each axis. A kernel equal to the
    stride (no padding), the U-Net's 2x2 stride-2 case, hands over to the patches of chapter 8
    (``nn/fast/``), unless ``fast`` is False.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias,
                         transposed=True)
        name = "ConvTranspose2d"
        self.output_padding = pair(output_padding, "output_padding", name, minimum=0)
        if any(extra >= step for extra, step in zip(self.output_padding, self.stride)):
            raise ValueError(f"{name}: output_padding must be smaller than the stride, got "
                             f"output_padding={self.output_padding} and stride={self.stride}")

    def output_size(self, height, width):
        """Where the last block ends, minus the padding cut from each side, plus output_padding."""
        return tuple((size - 1) * s - 2 * p + k + extra for size, s, p, k, extra in zip(
            (height, width), self.stride, self.padding, self.kernel_size, self.output_padding))

    def forward(self, x):
        self.check(x)
        n, _, height, width = x.shape
        size = self.output_size(height, width)
        if min(size) < 1:
            raise ValueError(f"ConvTranspose2d: input of spatial size {(height, width)} gives an "
                             f"empty output {size}; use less padding")
        if fast.conv_transpose_form(self):           # chapter 8's patches: the same, faster
            return fast.conv_transpose_forward(self, x)
        # columns[n, (o, i, j), l]: what input pixel l adds to output o at kernel tap (i, j).
        columns = self.weight.reshape(self.in_channels, -1).t().matmul(
            x.reshape(n, self.in_channels, -1))
        out = fold(columns, size, self.kernel_size, stride=self.stride, padding=self.padding)
        if self.bias is not None:
            out = out + self.bias.reshape(1, -1, 1, 1)
        self.saved = Saved("fold", x, out.shape)
        return out

    def backward(self, grad):
        check_grad_saved(self, grad, self.saved)
        if self.bias is not None:
            self.bias_grad += grad.sum((2, 3)).sum(0)     # pixels, then batch: see Conv2d
        if self.saved.form != "fold":                # the backward pass of chapter 8's form
            return fast.conv_transpose_backward(self, grad)
        x = self.saved.input
        n, c = x.shape[:2]
        # The adjoint of fold is unfold: each input pixel collects the gradient of its block.
        columns = unfold(grad, self.kernel_size, stride=self.stride, padding=self.padding)
        weight_grad = x.reshape(n, c, -1).matmul(columns.transpose(1, 2)).sum(0)
        self.weight_grad += weight_grad.reshape(self.weight.shape)
        input_grad = self.weight.reshape(c, -1).matmul(columns)             # (N, C, H*W)
        return input_grad.reshape(x.shape)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, "
                f"output_padding={self.output_padding}, bias={self.bias is not None}")
