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


BENCHMARK_SET, BENCHMARK_SIGMA = "kodak24", "25"   # the standard benchmark ranks shipped networks


def benchmark_psnr(card):
    """A card's PSNR on the standard benchmark (Kodak24, sigma 25, standard protocol), or None
    when it has not been measured (``tools/record_run.py --standard-results``)."""
    return card.get("standard_sets_psnr_db", {}).get(BENCHMARK_SET, {}).get(BENCHMARK_SIGMA)


def best_shipped_network(cards=None):
    """The best shipped network: the highest PSNR on the standard benchmark when every card
    has one, else the highest on the main validation set (crops of two bundled photographs),
    which every card has. A network trained on other photographs is judged fairly only by the
    standard benchmark."""
    cards = shipped_networks() if cards is None else cards
    if all(benchmark_psnr(card) is not None for card in cards.values()):
        return max(cards, key=lambda name: benchmark_psnr(cards[name]))
    return max(cards, key=lambda name: cards[name]["validation_psnr_db"])


def load_pretrained_state_dict(network):
    """Read the shipped weights of ``network`` onto the CPU (loads on a machine without a GPU)."""
    weights = pretrained_file(network, ".pth")
    if not weights.is_file():
        raise ValueError(f"no pretrained weights ship for {network!r}; shipped: "
                         f"{sorted(shipped_networks())}")
    with importlib.resources.as_file(weights) as path:
        return torch.load(path, map_location="cpu", weights_only=True)
