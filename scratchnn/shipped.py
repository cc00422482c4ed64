"""The pretrained networks shipped inside the package, and how to find and load them.

Each shipped network is ``scratchnn/pretrained/<name>.pth`` (the weights of its best validation
epoch) with a JSON card beside it that says how it was trained and what it scores. The card's
``network`` entry names the architecture (``kind``), its width and its options, so a shipped
name need not be an architecture's name (``unet-cbsd432`` is a ``unet`` of depth 4). The
course's ``Model`` and the command line's ``denoise`` both read them through this module.
"""
import importlib.resources
import json

import torch

from .networks import ARCHITECTURES

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
