"""The same networks in ``torch.nn`` with autograd: the referee for the from-scratch framework.

Nothing here is used to train the from-scratch networks. It exists to *check* them (same weights
in, same outputs, gradients and updates out) and to *compare* them (speed, PSNR curves side by
side). The architectures come from ``scratchnn.networks``: each is written once, as a function of
a layer library, and here it is given ``torch.nn``'s layers instead of ``scratchnn.nn``'s.
"""
from torch import nn

from .networks import architecture


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


class TorchLayers:
    """The layer library an architecture function is built from, made of ``torch.nn`` modules."""
    Sequential = nn.Sequential
    Conv2d = nn.Conv2d
    ReLU = nn.ReLU
    Sigmoid = nn.Sigmoid
    Upsampling = ReferenceUpsampling

    @staticmethod
    def NearestUpsampling(scale_factor):  # noqa: N802 (named like the class it stands for)
        return nn.Upsample(scale_factor=scale_factor, mode="nearest")


def build_reference(kind="seed000", channels=None):
    """The ``torch.nn`` twin of ``scratchnn.build_network(kind, channels)``."""
    variant = architecture(kind)
    return variant.build(TorchLayers, channels or variant.default_channels)


def copy_weights(source, destination):
    """Copy every parameter from ``source`` into ``destination``, in either direction.

    Both frameworks name parameters alike (``"0.weight"``, ``"4.conv.bias"``, ...), so a
    ``state_dict`` of one loads into the other; ``load_state_dict`` checks names and shapes and
    copies into the destination's own tensors (its dtype and device are kept). Returns
    ``destination``.
    """
    destination.load_state_dict({name: tensor.detach()
                                 for name, tensor in source.state_dict().items()})
    return destination
