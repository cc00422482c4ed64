"""The denoising networks, each written once as a function of a *layer library*.

``scratchnn.nn`` builds the from-scratch network; ``scratchnn.reference.TorchLayers`` builds the
same network from ``torch.nn``. Both have the same layers in the same order, so their
``state_dict`` keys are identical and weights move freely between the two.
"""
from dataclasses import dataclass, field
from typing import Callable

from . import nn


def seed000_network(layers, channels=100):
    """Table 1 of seed report 000 (23.42 dB on the course's data).

    Two stride-2 convolutions with 2x2 kernels halve the image twice (32 -> 16 -> 8); two
    ``Upsampling`` blocks (nearest-neighbour upsampling x2, then a 3x3 convolution: Table 1's
    rows 3 and 4) bring it back to 32. As one block, the upsampling and the convolution run as
    the fast fused computation of chapter 8, with the same result.
    """
    return layers.Sequential(
        layers.Conv2d(3, channels, kernel_size=2, stride=2), layers.ReLU(),
        layers.Conv2d(channels, channels, kernel_size=2, stride=2), layers.ReLU(),
        layers.Upsampling(channels, channels, kernel_size=3, scale_factor=2, padding=1),
        layers.ReLU(),
        layers.Upsampling(channels, 3, kernel_size=3, scale_factor=2, padding=1), layers.Sigmoid(),
    )


def seed003_network(layers, channels=32):
    """The network of seed report 003: 3x3 stride-2 convolutions, then two ``Upsampling`` blocks
    (nearest upsampling followed by a 3x3 convolution, as one module)."""
    return layers.Sequential(
        layers.Conv2d(3, channels, kernel_size=3, padding=1, stride=2), layers.ReLU(),
        layers.Conv2d(channels, channels, kernel_size=3, padding=1, stride=2), layers.ReLU(),
        layers.Upsampling(channels, channels, kernel_size=3, scale_factor=2, padding=1),
        layers.ReLU(),
        layers.Upsampling(channels, 3, kernel_size=3, scale_factor=2, padding=1), layers.Sigmoid(),
    )


def upsample_x2(layers, channels, upsampling):
    """Double H and W: a 2x2 stride-2 transposed convolution, or nearest x2 + a 3x3 convolution
    (chapter 5's ``Upsampling``, the Noise2Noise paper's choice, free of checkerboards)."""
    if upsampling == "transposed":
        return layers.ConvTranspose2d(channels, channels, 2, stride=2)
    return layers.Upsampling(channels, channels, 3, scale_factor=2, padding=1)


def unet_level(layers, channels, depth, upsampling="transposed"):
    """One level of the U-Net, as a block that keeps H and W and returns 2 * channels maps.

    ``Concat`` keeps the input (the skip connection, full resolution) beside what the inner
    path computes at half resolution: max-pool, convolution, the next level (if any), then
    back up (``upsample_x2``).
    """
    inner = [layers.MaxPool2d(2), layers.Conv2d(channels, channels, 3, padding=1),
             layers.LeakyReLU(0.1)]
    if depth > 1:
        inner += [unet_level(layers, channels, depth - 1, upsampling),
                  layers.Conv2d(2 * channels, channels, 3, padding=1), layers.LeakyReLU(0.1)]
    inner += [upsample_x2(layers, channels, upsampling)]
    return layers.Concat(layers.Sequential(*inner))


def unet_network(layers, channels=48, depth=3, upsampling="transposed"):
    """A residual U-Net in the spirit of the Noise2Noise paper's, scaled to train on two cores.

    Each level halves the resolution with a 2x2 max-pool (32 -> 16 -> 8 -> 4 for depth 3),
    comes back up (a 2x2 stride-2 transposed convolution, or ``upsampling="nearest"``: nearest
    x2 and a 3x3 convolution), and concatenates the full-resolution maps of its input
    (``unet_level``). Leaky ReLUs of slope 0.1 as in the paper. The whole network is wrapped in
    ``Residual``: it predicts the *correction* to the noisy image, so an untrained network
    starts near "do nothing" rather than near grey. The output is not squashed; ``predict``
    clips it to [0, 255].
    """
    if upsampling not in UPSAMPLINGS:
        raise ValueError(f"unknown upsampling {upsampling!r}; expected one of {UPSAMPLINGS}")
    if not (isinstance(depth, int) and 1 <= depth <= 6):
        raise ValueError(f"expected a U-Net depth from 1 to 6, got {depth!r}")
    return layers.Residual(layers.Sequential(
        layers.Conv2d(3, channels, 3, padding=1), layers.LeakyReLU(0.1),
        layers.Conv2d(channels, channels, 3, padding=1), layers.LeakyReLU(0.1),
        unet_level(layers, channels, depth, upsampling),
        layers.Conv2d(2 * channels, channels, 3, padding=1), layers.LeakyReLU(0.1),
        layers.Conv2d(channels, 3, 3, padding=1),
    ))


UPSAMPLINGS = ("transposed", "nearest")


def unet_size_multiple(depth=3, **_):
    """A U-Net of depth d halves the image d times: H and W must be multiples of 2**d."""
    return 2 ** depth


@dataclass(frozen=True)
class Architecture:
    """One network variant: how to build it, its usual width, one line for the book's table,
    the number H and W must be multiples of to train (it halves the image that often), and the
    options its builder takes besides the width, each with the values it may have (the default
    first)."""
    build: Callable
    default_channels: int
    description: str
    size_multiple: Callable = lambda **options: 4
    options: dict = field(default_factory=dict)


ARCHITECTURES = {
    "seed000": Architecture(seed000_network, 100, "Seed 000, Table 1: conv 2x2/2, conv 2x2/2, "
                                                  "Upsampling(3x3, x2) twice, Sigmoid"),
    "seed003": Architecture(seed003_network, 32, "Seed 003: conv 3x3/2, conv 3x3/2, "
                                                 "Upsampling(3x3, x2) twice, Sigmoid"),
    "unet": Architecture(unet_network, 48, "Residual U-Net, --depth levels (max-pool 2x2; "
                                           "--upsampling: transposed conv 2x2/2 or nearest + "
                                           "conv 3x3; skip by Concat), leaky ReLU",
                         unet_size_multiple,
                         {"depth": (3, 4, 5, 2, 1, 6), "upsampling": UPSAMPLINGS}),
}

# ``predict`` pads an image to multiples of this unless the network says otherwise
# (``network.size_multiple``, set by ``build_network``): the default variants' largest.
SIZE_MULTIPLE = max(variant.size_multiple() for variant in ARCHITECTURES.values())


def architecture(kind):
    """Look up a variant by name, with an error that lists the names that exist."""
    if kind not in ARCHITECTURES:
        raise ValueError(f"unknown network {kind!r}; expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[kind]


def check_options(kind, options):
    """Every option must be one the variant takes, with a value it allows."""
    allowed = architecture(kind).options
    for name, value in options.items():
        if name not in allowed:
            raise ValueError(f"network {kind!r} takes no option {name!r}"
                             + (f"; its options: {sorted(allowed)}" if allowed else ""))
        if value not in allowed[name]:
            raise ValueError(f"network {kind!r}: {name} must be one of "
                             f"{sorted(allowed[name], key=str)}, got {value!r}")


def build_network(kind="seed000", channels=None, **options):
    """The from-scratch network ``kind`` (a ``scratchnn.nn.Sequential``).

    ``channels`` is the width of the hidden layers; ``None`` takes the variant's own width
    (100 for seed000, 32 for seed003, 48 for the U-Net). ``options`` are the variant's own
    (the U-Net's ``depth`` and ``upsampling``). The network remembers the multiple its input's
    H and W are padded to (``size_multiple``), for ``predict``.
    """
    variant = architecture(kind)
    check_options(kind, options)
    network = variant.build(nn, channels or variant.default_channels, **options)
    network.size_multiple = variant.size_multiple(**options)
    return network


def check_trainable_size(images, name="train_input", kind=None, **options):
    """Training images must have H and W divisible by the network's ``size_multiple`` (the
    default variants' largest when ``kind`` is None): say so before the loss finds an output of
    another size than its target."""
    multiple = SIZE_MULTIPLE if kind is None else architecture(kind).size_multiple(**options)
    height, width = images.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(f"{name}: the network halves the image {multiple.bit_length() - 1} "
                         f"times, so training images need a height and width divisible by "
                         f"{multiple}; got {height}x{width} (crop them, e.g. "
                         f"images[..., :{height - height % multiple}, "
                         f":{width - width % multiple}])")


def option_choices(kind):
    """Every combination of the variant's options, the defaults first: ``[{}]`` for none."""
    choices = [{}]
    for name, values in architecture(kind).options.items():
        choices = [{**chosen, name: value} for chosen in choices for value in values]
    return choices


def network_from_state_dict(state_dict):
    """Rebuild the from-scratch network that a saved ``state_dict`` belongs to.

    The width is the first layer's number of output channels; the variant (and its options,
    such as the U-Net's depth) is the first one whose parameter names and shapes all match.
    """
    if not isinstance(state_dict, dict):
        raise ValueError(f"expected a network state_dict, got a {type(state_dict).__name__}")
    first = next((value for name, value in state_dict.items() if name.endswith("weight")), None)
    if not hasattr(first, "shape"):
        raise ValueError(f"not a scratchnn network state_dict: no weight tensor among "
                         f"{sorted(state_dict)[:6]}")
    for kind in ARCHITECTURES:
        for options in option_choices(kind):
            network = build_network(kind, first.shape[0], **options)
            try:
                network.load_state_dict(state_dict)
            except ValueError:
                continue
            return network
    raise ValueError(f"the state_dict matches none of the networks {sorted(ARCHITECTURES)} "
                     f"(first layer weight of shape {tuple(first.shape)})")
