"""The course's ``Model`` class, and the pretrained networks shipped inside the package.

The course API takes and returns images the way the course stores them: tensors of shape
(N, 3, H, W) with values 0..255. Each shipped network is ``scratchnn/pretrained/<network>.pth``
(the weights of its best validation epoch) with a JSON card beside it that says how it was
trained and what it scores.
"""
import importlib.resources
import json

import torch

from .inference import check_images, denoise
from .networks import ARCHITECTURES, architecture, build_network, check_trainable_size
from .settings import DEFAULT_BATCH_SIZE, TrainSettings
from .train import make_optimizer, train

PRETRAINED = "pretrained"


def pretrained_file(network, suffix):
    """A ``Traversable`` for ``scratchnn/pretrained/<network><suffix>`` inside the package."""
    return importlib.resources.files("scratchnn") / PRETRAINED / f"{network}{suffix}"


def shipped_networks():
    """The networks whose weights ship with the package, and their cards (dicts), by name."""
    return {kind: json.loads(pretrained_file(kind, ".json").read_text())
            for kind in ARCHITECTURES if pretrained_file(kind, ".pth").is_file()}


def best_shipped_network():
    """The shipped network with the highest PSNR on the main validation set of its card."""
    cards = shipped_networks()
    return max(cards, key=lambda kind: cards[kind]["validation_psnr_db"])


def load_pretrained_state_dict(network):
    """Read the shipped weights of ``network`` onto the CPU (loads on a machine without a GPU)."""
    weights = pretrained_file(network, ".pth")
    if not weights.is_file():
        raise ValueError(f"no pretrained weights ship for {network!r}; shipped: "
                         f"{sorted(shipped_networks())}")
    with importlib.resources.as_file(weights) as path:
        return torch.load(path, map_location="cpu", weights_only=True)


class Model:
    """The course's interface: ``Model()``, ``load_pretrained_model()``, ``train``, ``predict``.

    ``Model()`` is the best network shipped with the package; ``Model(network="seed000")`` names
    one (see ``scratchnn.networks.ARCHITECTURES``), as wide as its shipped weights when there
    are some. Images are (N, 3, H, W) tensors, uint8 or float, with values 0..255. The network
    runs on the GPU when there is one.
    """

    def __init__(self, network=None):
        self.network_kind = best_shipped_network() if network is None else network
        architecture(self.network_kind)  # a clear error for an unknown name
        card = shipped_networks().get(self.network_kind)
        channels = card["network"]["channels"] if card else None
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.network = build_network(self.network_kind, channels).to(self.device)
        self.settings = TrainSettings(batch_size=DEFAULT_BATCH_SIZE, device=self.device.type)
        self.optimizer = make_optimizer(self.network, self.settings.optimizer)
        self.train_calls = 0

    def load_pretrained_model(self):
        """Load the shipped weights of this network (``scratchnn/pretrained/<network>.pth``)."""
        self.network.load_state_dict(load_pretrained_state_dict(self.network_kind))

    def train(self, train_input, train_target, num_epochs):
        """Train on pairs of noisy images (``train_target`` is a second noisy copy of
        ``train_input``).

        Mini-batches of shuffled pairs; the MSE between the network's output and the target is
        minimised with the optimizer kept from one call to the next. Returns the history.
        """
        check_images(train_input, "train_input")
        check_images(train_target, "train_target")
        check_trainable_size(train_input, kind=self.network_kind)
        settings = TrainSettings(batch_size=self.settings.batch_size,
                                 device=self.settings.device, seed=self.train_calls)
        history = train(self.network, train_input, train_target, num_epochs, settings=settings,
                        optimizer=self.optimizer)
        self.train_calls += 1  # a different shuffle on the next call
        return history

    def predict(self, test_input):
        """Denoise (N, 3, H, W) images, values 0..255, any H and W; returns floats in [0, 255]."""
        return denoise(self.network, test_input)
