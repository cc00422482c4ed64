"""The course's ``Model`` class, and the pretrained networks shipped inside the package.

The course API takes and returns images the way the course stores them: tensors of shape
(N, 3, H, W) with values 0..255. Each shipped network is ``scratchnn/pretrained/<name>.pth``
(the weights of its best validation epoch) with a JSON card beside it that says how it was
trained and what it scores. The card's ``network`` entry names the architecture (``kind``), its
width and its options, so a shipped name need not be an architecture's name
(``unet-cbsd432`` is a ``unet`` of depth 4).
"""
import importlib.resources
import json

import torch

from .inference import check_images, denoise
from .networks import ARCHITECTURES, build_network, check_trainable_size
from .settings import DEFAULT_BATCH_SIZE, TrainSettings
from .optimizers import make_optimizer
from .train import train

PRETRAINED = "pretrained"


def pretrained_file(network, suffix):
    """A ``Traversable`` for ``scratchnn/pretrained/<network><suffix>`` inside the package."""
    return importlib.resources.files("scratchnn") / PRETRAINED / f"{network}{suffix}"


def shipped_networks():
    """The networks whose weights ship with the package, and their cards (dicts), by name."""
    folder = importlib.resources.files("scratchnn") / PRETRAINED
    names = sorted(entry.name[:-len(".json")] for entry in folder.iterdir()
                   if entry.name.endswith(".json"))
    return {name: json.loads(pretrained_file(name, ".json").read_text())
            for name in names if pretrained_file(name, ".pth").is_file()}


def shipped_architecture(name):
    """``(kind, channels, options)`` of a shipped network, from its card; for an architecture's
    name with no shipped weights, that architecture at its own width."""
    card = shipped_networks().get(name)
    if card is None:
        if name not in ARCHITECTURES:
            raise ValueError(f"unknown network {name!r}; expected one of the shipped networks "
                             f"{sorted(shipped_networks())} or an architecture "
                             f"{sorted(ARCHITECTURES)}")
        return name, None, {}
    network = card["network"]
    return network["kind"], network["channels"], network.get("options", {})


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
    a shipped network (``shipped_networks()``) or an architecture
    (``scratchnn.networks.ARCHITECTURES``), built as its shipped card says when there is one.
    Images are (N, 3, H, W) tensors, uint8 or float, with values 0..255. The network runs on
    the GPU when there is one.
    """

    def __init__(self, network=None):
        self.network_kind = best_shipped_network() if network is None else network
        kind, channels, options = shipped_architecture(self.network_kind)
        self.architecture = kind
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.network = build_network(kind, channels, **options).to(self.device)
        # Made after the move to the device: the optimizer must hold the moved tensors.
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
        check_trainable_size(train_input, "train_input", self.architecture,
                             **shipped_architecture(self.network_kind)[2])
        settings = TrainSettings(batch_size=self.settings.batch_size,
                                 device=self.settings.device, seed=self.train_calls)
        history = train(self.network, train_input, train_target, num_epochs, settings=settings,
                        optimizer=self.optimizer)
        self.train_calls += 1  # a different shuffle on the next call
        return history

    def predict(self, test_input):
        """Denoise (N, 3, H, W) images, values 0..255, any H and W; returns floats in [0, 255]."""
        return denoise(self.network, test_input)
