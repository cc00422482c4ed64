"""The denoising networks and the course's ``Model`` class.

Each architecture is written **once**, as a function of a *layer library*: ``scratchnn.nn`` builds the
from-scratch network, ``scratchnn.reference.TorchLayers`` builds the same network from ``torch.nn``.
Both have the same layers in the same order, so their ``state_dict`` keys are identical.

The course API (``Model``) takes and returns images the way the course stores them: tensors of shape
(N, 3, H, W) with values 0..255. Inside, the network sees floats in [0, 1] and ends with a Sigmoid.
"""
import importlib.resources
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional

from . import nn

# --- the architectures ---------------------------------------------------------------------------


def seed000_network(layers, channels=100):
    """Table 1 of seed report 000 (23.42 dB on the course's data).

    Two stride-2 convolutions with 2x2 kernels halve the image twice (32 -> 16 -> 8); two
    ``Upsampling`` blocks (nearest-neighbour upsampling x2, then a 3x3 convolution: Table 1's rows 3
    and 4) bring it back to 32. As one block, the upsampling and the convolution run as the fast
    fused computation of chapter 8, with the same result.
    """
    return layers.Sequential(
        layers.Conv2d(3, channels, kernel_size=2, stride=2), layers.ReLU(),
        layers.Conv2d(channels, channels, kernel_size=2, stride=2), layers.ReLU(),
        layers.Upsampling(channels, channels, kernel_size=3, scale_factor=2, padding=1), layers.ReLU(),
        layers.Upsampling(channels, 3, kernel_size=3, scale_factor=2, padding=1), layers.Sigmoid(),
    )


def seed003_network(layers, channels=32):
    """The network of seed report 003: 3x3 stride-2 convolutions, then two ``Upsampling`` blocks
    (nearest upsampling followed by a 3x3 convolution, as one module)."""
    return layers.Sequential(
        layers.Conv2d(3, channels, kernel_size=3, padding=1, stride=2), layers.ReLU(),
        layers.Conv2d(channels, channels, kernel_size=3, padding=1, stride=2), layers.ReLU(),
        layers.Upsampling(channels, channels, kernel_size=3, scale_factor=2, padding=1), layers.ReLU(),
        layers.Upsampling(channels, 3, kernel_size=3, scale_factor=2, padding=1), layers.Sigmoid(),
    )


@dataclass(frozen=True)
class Architecture:
    """One network variant: how to build it, its usual width, and one line for the book's table."""
    build: Callable
    default_channels: int
    description: str


ARCHITECTURES = {
    "seed000": Architecture(seed000_network, 100, "Seed 000, Table 1: conv 2x2/2, conv 2x2/2, "
                                                  "Upsampling(3x3, x2) twice, Sigmoid"),
    "seed003": Architecture(seed003_network, 32, "Seed 003: conv 3x3/2, conv 3x3/2, "
                                                 "Upsampling(3x3, x2) twice, Sigmoid"),
}

# Every network above halves the image twice, so H and W must be multiples of this.
SIZE_MULTIPLE = 4


def architecture(kind):
    """Look up a variant by name, with an error that lists the names that exist."""
    if kind not in ARCHITECTURES:
        raise ValueError(f"unknown network {kind!r}; expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[kind]


def build_network(kind="seed000", channels=None):
    """The from-scratch network ``kind`` (a ``scratchnn.nn.Sequential``).

    ``channels`` is the width of the hidden layers; ``None`` takes the variant's own width
    (100 for seed000, 32 for seed003).
    """
    variant = architecture(kind)
    return variant.build(nn, channels or variant.default_channels)


def network_from_state_dict(state_dict):
    """Rebuild the from-scratch network that a saved ``state_dict`` belongs to.

    The width is the first layer's number of output channels; the variant is the first one whose
    parameter names and shapes all match.
    """
    if "0.weight" not in state_dict:
        raise ValueError(f"not a scratchnn network state_dict: no '0.weight' among {sorted(state_dict)[:6]}")
    channels = state_dict["0.weight"].shape[0]
    for kind in ARCHITECTURES:
        network = build_network(kind, channels)
        try:
            network.load_state_dict(state_dict)
        except ValueError:
            continue
        return network
    raise ValueError(f"the state_dict matches none of the networks {sorted(ARCHITECTURES)} "
                     f"(first layer weight of shape {tuple(state_dict['0.weight'].shape)})")


# --- images in, images out -----------------------------------------------------------------------


def check_images(images, name="input"):
    """Raise a ValueError unless ``images`` is an (N, 3, H, W) tensor with values in 0..255."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{name}: expected a 4-D tensor (N, 3, H, W), got shape {tuple(images.shape)}")
    if min(images.shape) == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return  # uint8 cannot hold anything outside 0..255
    if not images.is_floating_point():
        raise ValueError(f"{name}: expected uint8 or floating-point values 0..255, got dtype {images.dtype}")
    low, high = images.min().item(), images.max().item()
    if not (0 <= low and high <= 255):  # also false for NaN
        raise ValueError(f"{name}: expected values in [0, 255], got values in [{low}, {high}]")


def pad_to_multiple(images, multiple=SIZE_MULTIPLE):
    """Pad H and W up to multiples of ``multiple`` by repeating the edge pixels ("replicate").

    Returns the padded images and the original (H, W), to cut the padding off the output.
    Replicating the border works for any size, even a 1x1 image (reflection needs 2 or more pixels).
    """
    height, width = images.shape[2:]
    extra_h, extra_w = -height % multiple, -width % multiple
    if extra_h or extra_w:
        images = torch.nn.functional.pad(images, (0, extra_w, 0, extra_h), mode="replicate")
    return images, (height, width)


def window_starts(size, tile, margin):
    """Where each tile's window begins along one axis: tiles every ``tile`` pixels, each window
    reaching ``margin`` pixels before (clipped at 0)."""
    return [(start, max(start - margin, 0)) for start in range(0, size, tile)]


def apply_in_tiles(network, images, tile=192, margin=32):
    """Run ``network`` on padded images (N, 3, H, W) a tile at a time, with overlapping margins.

    Why: the last convolution's ``unfold`` copies every pixel 9 x channels times; for a
    12-megapixel photograph that would be tens of gigabytes. Each tile is computed from a window
    ``margin`` pixels larger on every side and only its centre is kept. Because windows start at
    multiples of 4 (the stride grid of the network stays aligned) and ``margin`` exceeds the
    network's receptive-field radius, the result equals the whole-image result (up to rounding:
    the matrix products are split differently).
    """
    height, width = images.shape[2:]
    if height <= tile + margin and width <= tile + margin:
        return network.forward(images)
    out = images.new_empty(images.shape)
    for top, window_top in window_starts(height, tile, margin):
        window_bottom = min(top + tile + margin, height)
        for left, window_left in window_starts(width, tile, margin):
            window_right = min(left + tile + margin, width)
            window = images[:, :, window_top:window_bottom, window_left:window_right]
            result = network.forward(window)
            rows = slice(top - window_top, top - window_top + min(tile, height - top))
            cols = slice(left - window_left, left - window_left + min(tile, width - left))
            out[:, :, top:top + tile, left:left + tile] = result[:, :, rows, cols]
    return out


def denoise(network, images, pixels_per_batch=64 * 32 * 32):
    """Denoise (N, 3, H, W) images with values 0..255 (any H, W) into floats in [0, 255].

    Images go through the network in batches of about ``pixels_per_batch`` pixels (a large image
    alone, in tiles), so memory stays bounded. The output is on the input's device; the network
    may be on another (e.g. the GPU).
    """
    check_images(images)
    device, dtype = network_device_and_dtype(network)
    per_batch = max(1, pixels_per_batch // (images.shape[2] * images.shape[3]))
    return torch.cat([denoise_batch(network, images[start:start + per_batch], device, dtype)
                      for start in range(0, len(images), per_batch)])


def denoise_batch(network, images, device, dtype):
    """Scale to [0, 1], pad to multiples of 4, run the network, crop the padding, scale back."""
    padded, (height, width) = pad_to_multiple(images.to(device=device, dtype=dtype) / 255)
    with torch.no_grad():  # only matters for a torch.nn twin; scratchnn never records anything
        denoised = apply_in_tiles(network, padded)[:, :, :height, :width]
    return (denoised * 255).clamp(0, 255).to(images.device)


def network_device_and_dtype(network):
    """The device and dtype of a network's first parameter (scratchnn or torch.nn)."""
    if isinstance(network, torch.nn.Module):
        parameter = next(network.parameters())
    else:
        parameter = network.param()[0][0]
    return parameter.device, parameter.dtype


# --- the course API ------------------------------------------------------------------------------

# How ``Model()`` trains, chosen by measurement: the seed000 network (torch.nn twin, same arithmetic)
# on 4,000 default pairs for 3 epochs; PSNR on 300 validation images after epochs 1, 2, 3 (noisy: 20.64 dB):
#   SGD lr 0.1, batch 8 (seed 000's setting)  23.45  23.76  23.97 dB
#   SGD lr 0.1, momentum 0.9, batch 16        24.59  24.89  25.78 dB
#   Adam lr 1e-3, batch 8                     27.02  27.62  26.59 dB
#   Adam lr 1e-3, batch 16                    26.13  27.07  27.52 dB   <- steadier, and faster on a GPU
DEFAULT_OPTIMIZER = "adam"
DEFAULT_LR = 1e-3
DEFAULT_BATCH_SIZE = 16


def pretrained_weights_path():
    """A ``Traversable`` for the ``bestmodel.pth`` shipped inside the package."""
    return importlib.resources.files("scratchnn") / "bestmodel.pth"


def load_pretrained_state_dict():
    """Read the shipped weights onto the CPU (so a machine without a GPU can load them)."""
    with importlib.resources.as_file(pretrained_weights_path()) as path:
        return torch.load(path, map_location="cpu", weights_only=True)


class Model:
    """The course's interface: ``Model()``, ``load_pretrained_model()``, ``train``, ``predict``.

    Images are (N, 3, H, W) tensors, uint8 or float, with values 0..255. The network is the seed000
    network with 100 channels, on the GPU when there is one.
    """

    def __init__(self):
        from .train import make_optimizer  # imported here: train.py imports this module
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.network = build_network("seed000").to(self.device)
        # Built after the move to the device: the optimizer must hold the moved tensors.
        self.optimizer = make_optimizer(self.network, DEFAULT_OPTIMIZER, DEFAULT_LR)
        self.batch_size = DEFAULT_BATCH_SIZE
        self.train_calls = 0

    def load_pretrained_model(self):
        """Load the weights in ``bestmodel.pth`` (shipped with the package) into the network."""
        self.network.load_state_dict(load_pretrained_state_dict())

    def train(self, train_input, train_target, num_epochs):
        """Train on pairs of noisy images (``train_target`` is a second noisy copy of ``train_input``).

        Mini-batches of shuffled pairs; the MSE between the network's output and the target is
        minimised with the optimizer kept from one call to the next. Returns the loss history.
        """
        from .train import train
        check_images(train_input, "train_input")  # shapes and num_epochs are checked by train()
        check_images(train_target, "train_target")
        history = train(self.network, train_input, train_target, num_epochs, optimizer=self.optimizer,
                        batch_size=self.batch_size, device=self.device, seed=self.train_calls)
        self.train_calls += 1  # a different shuffle on the next call
        return history

    def predict(self, test_input):
        """Denoise (N, 3, H, W) images, values 0..255, any H and W; returns floats in [0, 255]."""
        return denoise(self.network, test_input)
