"""The same networks in ``torch.nn`` with autograd: the referee for the from-scratch framework.

Nothing here is used to train the from-scratch networks. It exists to *check* them (same weights
in, same outputs, gradients and updates out) and to *compare* them (speed, PSNR curves side by
side). The architectures come from ``scratchnn.networks``: each is written once, as a function of
a layer library, and here it is given ``torch.nn``'s layers instead of ``scratchnn.nn``'s.
"""
import torch
from torch import nn

from .networks import architecture, check_options


class ReferenceUpsampling(nn.Module):
    """Nearest upsampling followed by a convolution: ``scratchnn.nn.Upsampling`` in ``torch.nn``.

    The attribute names ``upsample`` and ``conv`` give the parameter names ``conv.weight`` and
    ``conv.bias``, exactly those of the from-scratch block.
    """

    def __init__(self, in_channels, out_channels, kernel_size, scale_factor=2, stride=1, padding=0,
                 dilation=1, bias=True):
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=scale_factor, mode="nearest")
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
                              bias=bias)

    def forward(self, x):
        return self.conv(self.upsample(x))


class ReferenceConcat(nn.Module):
    """``scratchnn.nn.Concat`` in torch.nn: ``cat([x, module(x)], 1)``; autograd adds the two
    paths at the fork. The attribute ``module`` gives the same parameter names."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return torch.cat([x, self.module(x)], dim=1)


class ReferenceResidual(nn.Module):
    """``scratchnn.nn.Residual`` in torch.nn: ``x + module(x)``."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return x + self.module(x)


class TorchLayers:
    """The layer library an architecture function is built from, made of ``torch.nn`` modules."""
    Sequential = nn.Sequential
    Conv2d = nn.Conv2d
    ConvTranspose2d = nn.ConvTranspose2d
    MaxPool2d = nn.MaxPool2d
    ReLU = nn.ReLU
    LeakyReLU = nn.LeakyReLU
    Sigmoid = nn.Sigmoid
    Upsampling = ReferenceUpsampling
    Concat = ReferenceConcat
    Residual = ReferenceResidual

    @staticmethod
    def NearestUpsampling(scale_factor):  # noqa: N802 (named like the class it stands for)
        return nn.Upsample(scale_factor=scale_factor, mode="nearest")


def transposed_kernel(weight):
    """The 4x4 ``ConvTranspose2d`` weight (in, out, 4, 4) that computes nearest x2 upsampling
    followed by a 3x3 padding-1 convolution of weight (out, in, 3, 3) (chapter 8).

    Output pixel p reads upsampled pixels p-1, p, p+1, that is small pixels (p-1)//2 .. (p+1)//2;
    collecting the taps that land on the same small pixel gives, along each axis, the 3-tap
    kernel flipped and convolved with (1, 1): K = (w2, w1 + w2, w0 + w1, w0).
    """
    flipped = weight.flip(2, 3)
    kernel = weight.new_zeros(*weight.shape[:2], 4, 4)
    for a in (0, 1):
        for b in (0, 1):
            kernel[:, :, a:a + 3, b:b + 3] += flipped
    return kernel.transpose(0, 1)


class TransposedUpsampling(nn.Module):
    """``ReferenceUpsampling(in, out, 3, scale_factor=2, padding=1)`` as the one fastest torch
    layer that computes the same function: ``nn.ConvTranspose2d(in, out, 4, stride=2,
    padding=1)``. Its weight has another shape; ``load_state_dict`` of the 3x3 form converts it
    with ``transposed_kernel``."""

    def __init__(self, in_channels, out_channels, bias=True):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1,
                                       bias=bias)

    def forward(self, x):
        return self.conv(x)


class TransposedLayers(TorchLayers):
    """``TorchLayers`` with every "nearest x2 + 3x3 padding-1 convolution" block built as one
    ``ConvTranspose2d``: the fastest torch form of the course network, the honest speed anchor."""

    @staticmethod
    def Upsampling(in_channels, out_channels, kernel_size, scale_factor=2, stride=1,  # noqa: N802
                   padding=0, dilation=1, bias=True):
        if (kernel_size, scale_factor, stride, padding, dilation) == (3, 2, 1, 1, 1):
            return TransposedUpsampling(in_channels, out_channels, bias)
        return ReferenceUpsampling(in_channels, out_channels, kernel_size, scale_factor, stride,
                                   padding, dilation, bias)


def build_reference(kind="seed000", channels=None, upsampling_blocks="nearest", **options):
    """The ``torch.nn`` twin of ``scratchnn.build_network(kind, channels, **options)``.

    ``upsampling_blocks="transposed"`` builds each nearest x2 + 3x3 convolution block as one
    ``ConvTranspose2d`` instead (``TransposedLayers``); load weights with ``copy_weights``.
    (The U-Net's own option ``upsampling`` says which kind of block it has.)
    """
    layers = {"nearest": TorchLayers, "transposed": TransposedLayers}[upsampling_blocks]
    variant = architecture(kind)
    check_options(kind, options)
    network = variant.build(layers, channels or variant.default_channels, **options)
    network.size_multiple = variant.size_multiple(**options)
    return network


def copy_weights(source, destination):
    """Copy every parameter from ``source`` into ``destination``, in either direction.

    Both frameworks name parameters alike (``"0.weight"``, ``"4.conv.bias"``, ...), so a
    ``state_dict`` of one loads into the other; ``load_state_dict`` checks names and shapes and
    copies into the destination's own tensors (its dtype and device are kept). Returns
    ``destination``.

    The 3x3 weight of an upsampling block goes into a ``TransposedUpsampling`` as its 4x4
    transposed kernel (one direction only: the 4x4 kernels are not all of that form).
    """
    shapes = {name: tuple(tensor.shape) for name, tensor in destination.state_dict().items()}
    weights = {}
    for name, tensor in source.state_dict().items():
        tensor = tensor.detach()
        a_3x3_going_into_a_4x4 = (tensor.dim() == 4 and tensor.shape[2:] == (3, 3)
                                  and shapes.get(name, ())[2:] == (4, 4))
        if a_3x3_going_into_a_4x4:
            tensor = transposed_kernel(tensor)
        weights[name] = tensor
    with torch.no_grad():
        destination.load_state_dict(weights)
    return destination
